-- The floor: the five contract marts computed straight from the landing files, in one DuckDB
-- script and one process. It has none of the pipeline's guarantees (no rejected-row
-- accounting, no ledger or incremental state, no dbt tests, no audit, no atomic publish): it
-- is what the same answer costs at the least. The harness sets `landing` before running it.

create or replace table customers as
select * from read_csv(getvariable('landing') || '/customers.csv', header = true, columns = {
    'customer_id': 'VARCHAR', 'customer_name': 'VARCHAR', 'parent_company': 'VARCHAR',
    'industry': 'VARCHAR', 'segment': 'VARCHAR', 'hq_country': 'VARCHAR',
    'is_synthetic': 'BOOLEAN', 'source': 'VARCHAR'
});

create or replace table earnings as
select * from read_csv(getvariable('landing') || '/earnings.csv', header = true, columns = {
    'fiscal_year': 'INTEGER', 'fiscal_quarter': 'INTEGER', 'reported_on': 'DATE',
    'intelligent_cloud_revenue_usd': 'DECIMAL(18,2)', 'intelligent_cloud_growth_pct': 'DECIMAL(6,2)',
    'segment_basis': 'VARCHAR', 'azure_growth_pct': 'DECIMAL(6,2)',
    'azure_growth_cc_pct': 'DECIMAL(6,2)', 'azure_consensus_pct': 'DECIMAL(6,2)',
    'azure_consensus_basis': 'VARCHAR', 'ai_contribution_pts': 'DECIMAL(6,2)',
    'stock_move_pct': 'DECIMAL(6,2)', 'stock_move_window': 'VARCHAR', 'source': 'VARCHAR',
    'note': 'VARCHAR'
});

create or replace table customer_months as
select
    date_trunc('month', usage_date)::date as month,
    customer_id,
    product_line,
    sum(amount_usd) as spend_usd,
    sum(tokens)::bigint as tokens
from read_csv(getvariable('landing') || '/spend/*.csv', header = true, columns = {
    'usage_date': 'DATE', 'customer_id': 'VARCHAR', 'product_line': 'VARCHAR',
    'model': 'VARCHAR', 'tokens': 'BIGINT', 'amount_usd': 'DECIMAL(18,4)'
})
group by all;

create or replace table dim_customers as
with lifetime as (
    select customer_id, min(month) as first_spend_month, max(month) as last_spend_month,
           sum(spend_usd) as lifetime_spend_usd
    from customer_months where spend_usd > 0 group by customer_id
)
select c.customer_id, c.customer_name, c.parent_company, c.industry, c.segment,
       upper(c.hq_country) as hq_country, c.is_synthetic, c.source as provenance,
       l.first_spend_month, l.last_spend_month,
       coalesce(l.lifetime_spend_usd, 0)::decimal(18, 2) as lifetime_spend_usd
from customers as c left join lifetime as l using (customer_id);

create or replace table fct_customer_monthly_spend as
with ranked as (
    select *,
           sum(spend_usd) over (partition by month, product_line) as line_spend,
           row_number() over (partition by month, product_line
                              order by spend_usd desc, customer_id) as rank_in_month
    from customer_months
)
select r.month, r.customer_id, c.customer_name, c.parent_company, c.segment, r.product_line,
       r.spend_usd::decimal(18, 2) as spend_usd, r.tokens,
       r.spend_usd::double / nullif(r.line_spend::double, 0) as share,
       r.rank_in_month,
       r.spend_usd::double / nullif(pm.spend_usd::double, 0) - 1 as mom_growth,
       r.spend_usd::double / nullif(py.spend_usd::double, 0) - 1 as yoy_growth
from ranked as r
left join customer_months as pm
    on pm.customer_id = r.customer_id and pm.product_line = r.product_line
    and pm.month = (r.month - interval 1 month)::date
left join customer_months as py
    on py.customer_id = r.customer_id and py.product_line = r.product_line
    and py.month = (r.month - interval 12 month)::date
left join customers as c on c.customer_id = r.customer_id;

create or replace table fct_segment_monthly_spend as
with segments as (
    select m.month, coalesce(c.segment, 'unknown') as segment, m.product_line,
           sum(m.spend_usd) as spend_usd,
           count(distinct case when m.spend_usd > 0 then m.customer_id end) as active_customers
    from customer_months as m left join customers as c using (customer_id)
    group by all
)
select month, segment, product_line, spend_usd::decimal(18, 2) as spend_usd,
       spend_usd::double / nullif(sum(spend_usd) over (partition by month, product_line)::double, 0)
           as share,
       active_customers
from segments;

create or replace table fct_revenue_concentration as
with spenders as (
    select m.month, m.product_line, 'customer' as level, m.customer_id as spender_id,
           coalesce(c.customer_name, m.customer_id) as spender_name, m.spend_usd
    from customer_months as m left join customers as c using (customer_id)
    union all
    select m.month, m.product_line, 'parent_company',
           coalesce(c.parent_company, m.customer_id), coalesce(c.parent_company, m.customer_id),
           sum(m.spend_usd)
    from customer_months as m left join customers as c using (customer_id)
    group by all
),
ranked as (
    select *,
           spend_usd::double
               / nullif(sum(spend_usd) over (partition by level, month, product_line)::double, 0)
               as share,
           row_number() over (partition by level, month, product_line
                              order by spend_usd desc, spender_id) as spender_rank
    from spenders where spend_usd > 0
),
measured as (
    select month, product_line, level, sum(spend_usd) as total_spend_usd, count(*) as active,
           max(case when spender_rank = 1 then spender_name end) as top_customer_name,
           sum(case when spender_rank = 1 then share else 0 end) as top1_share,
           sum(case when spender_rank <= 5 then share else 0 end) as top5_share,
           sum(case when spender_rank <= 10 then share else 0 end) as top10_share,
           sum((share * 100) * (share * 100)) as hhi,
           sum(case when share >= 0.1 then 1 else 0 end) as major_customers
    from ranked group by all
)
select month, product_line, level, total_spend_usd::decimal(18, 2) as total_spend_usd,
       active as active_customers, top_customer_name, top1_share, top5_share, top10_share, hhi,
       major_customers::bigint as major_customers,
       case when hhi > 1800 then 'highly_concentrated'
            when hhi >= 1000 then 'moderately_concentrated'
            else 'unconcentrated' end as concentration_level
from measured;

create or replace table fct_quarterly_earnings as
with quarters as (
    select (year(month) + (month(month) >= 7)::int)::int as fiscal_year,
           ((month(month) + 5) % 12 // 3 + 1)::int as fiscal_quarter,
           customer_id, sum(spend_usd) as spend_usd, count(distinct month) as usage_months
    from customer_months where product_line = 'azure_openai' group by all
),
usage_quarters as (
    select fiscal_year, fiscal_quarter, sum(spend_usd) as spend_usd,
           max(usage_months) as usage_months,
           max(spend_usd)::double / nullif(sum(spend_usd)::double, 0) as top1_share
    from quarters group by all
)
select e.fiscal_year, e.fiscal_quarter,
       (date '2000-07-01' + to_months(12 * (e.fiscal_year - 2001) + 3 * (e.fiscal_quarter - 1)))::date
           as quarter_start,
       (date '2000-07-01' + to_months(12 * (e.fiscal_year - 2001) + 3 * e.fiscal_quarter)
           - interval 1 day)::date as quarter_end,
       e.reported_on, e.intelligent_cloud_revenue_usd, e.intelligent_cloud_growth_pct,
       e.segment_basis, e.azure_growth_pct, e.azure_growth_cc_pct, e.azure_consensus_pct,
       e.azure_consensus_basis,
       (case when e.azure_consensus_basis = 'constant_currency'
             then e.azure_growth_cc_pct - e.azure_consensus_pct
             else e.azure_growth_pct - e.azure_consensus_pct end)::decimal(6, 2)
           as azure_growth_surprise_pts,
       e.ai_contribution_pts, e.stock_move_pct, e.stock_move_window,
       u.spend_usd::decimal(18, 2) as azure_openai_spend_usd,
       coalesce(u.usage_months, 0)::int as usage_months, u.top1_share,
       e.source as provenance, e.note
from earnings as e
left join usage_quarters as u using (fiscal_year, fiscal_quarter);
