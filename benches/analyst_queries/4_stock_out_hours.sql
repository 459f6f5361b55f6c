-- Stock-out hours per warehouse: the stock ledger of every (sku, warehouse) in event time, the
-- units available after each change (received + adjusted - reserved + released; shipping turns
-- reserved into shipped and leaves it unchanged), and the time until the next change summed over
-- the stretches with nothing available. Exact to the millisecond, from the events alone.
WITH ledger AS (
    SELECT sku, warehouse, occurred_at AS changed_at, quantity AS change FROM stock_received
    UNION ALL
    SELECT sku, warehouse, occurred_at, delta FROM stock_adjusted
    UNION ALL
    SELECT r.line['sku'], r.line['warehouse'], r.occurred_at, -r.line['qty']
    FROM (SELECT occurred_at, unnest(lines) AS line FROM inventory_reserved) r
    UNION ALL
    SELECT r.line['sku'], r.line['warehouse'], r.occurred_at, r.line['qty']
    FROM (SELECT occurred_at, unnest(lines) AS line FROM reservation_released) r
), levels AS (
    SELECT sku, warehouse, changed_at,
           sum(change) OVER (PARTITION BY sku, warehouse ORDER BY changed_at
                             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS available,
           lead(changed_at) OVER (PARTITION BY sku, warehouse ORDER BY changed_at) AS next_at
    FROM ledger
)
SELECT warehouse,
       count(DISTINCT sku) AS skus_out_of_stock,
       round(sum(CAST(round((date_part('epoch', next_at) - date_part('epoch', changed_at)) * 1000) AS BIGINT))
             / 3600000.0, 3) AS stock_out_hours
FROM levels
WHERE available <= 0 AND next_at > changed_at
GROUP BY warehouse
ORDER BY warehouse
