-- Top 20 products by revenue in one week (orders placed and not rejected for stock), with the
-- units sold. The date predicate is on the partition column, so only that week's files are read.
WITH sku_product AS (
    SELECT sku, min(product_id) AS product_id
    FROM (SELECT unnest(skus) AS sku, product_id FROM product_upserted) s
    GROUP BY sku
), sold AS (
    SELECT order_id, unnest(lines) AS line
    FROM order_placed
    WHERE date >= DATE '2026-01-05' AND date < DATE '2026-01-12'
)
SELECT p.product_id,
       sum(sold.line['qty'] * sold.line['unit_price']['amount_minor']) AS revenue_minor,
       sum(sold.line['qty']) AS units
FROM sold JOIN sku_product p ON sold.line['sku'] = p.sku
WHERE NOT EXISTS (SELECT 1 FROM order_rejected r WHERE r.order_id = sold.order_id)
GROUP BY p.product_id
ORDER BY revenue_minor DESC, p.product_id
LIMIT 20
