-- 30-day repeat-purchase cohorts: shoppers grouped by the week of their first order, and the
-- share who ordered again within 30 days of it.
WITH firsts AS (
    SELECT user_id, min(occurred_at) AS first_at
    FROM order_placed
    GROUP BY user_id
), repeaters AS (
    SELECT DISTINCT f.user_id
    FROM firsts f JOIN order_placed o ON o.user_id = f.user_id
    WHERE o.occurred_at > f.first_at AND o.occurred_at <= f.first_at + INTERVAL '30 days'
)
SELECT CAST(date_trunc('week', f.first_at) AS DATE) AS cohort_week,
       count(*) AS customers,
       count(r.user_id) AS repeat_within_30_days,
       round(CAST(count(r.user_id) AS DOUBLE) / count(*), 4) AS repeat_rate
FROM firsts f LEFT JOIN repeaters r ON r.user_id = f.user_id
GROUP BY CAST(date_trunc('week', f.first_at) AS DATE)
ORDER BY cohort_week
