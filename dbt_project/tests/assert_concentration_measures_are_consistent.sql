-- Top-N shares nest (top1 <= top5 <= top10 <= 1), and the HHI is bounded by the top share:
-- at least the top customer's squared share, at most what it would be if every customer were
-- as large as the top one (top1 x 10,000).
select *
from {{ ref('fct_revenue_concentration') }}
where not (
    top1_share <= top5_share + 1e-9
    and top5_share <= top10_share + 1e-9
    and top10_share <= 1 + 1e-9
    and hhi >= (top1_share * 100) * (top1_share * 100) - 1e-6
    and hhi <= top1_share * 10000 + 1e-6
)
