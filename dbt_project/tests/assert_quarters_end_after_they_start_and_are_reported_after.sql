-- A fiscal quarter ends after it starts, and its results are reported after it ends.
select *
from {{ ref('fct_quarterly_earnings') }}
where not (quarter_end > quarter_start and reported_on > quarter_end)
