-- Daily funnel conversion by top-level category: distinct shoppers who viewed a product of the
-- category, added one of its skus to a cart, and ordered one, per day.
WITH product_category AS (
    SELECT product_id, min(category_path[1]) AS category
    FROM product_upserted
    GROUP BY product_id
), sku_category AS (
    SELECT sku, min(category) AS category
    FROM (SELECT unnest(skus) AS sku, category_path[1] AS category FROM product_upserted) s
    GROUP BY sku
), viewed AS (
    SELECT v.date, p.category, count(DISTINCT v.user_id) AS viewers
    FROM product_viewed v JOIN product_category p ON v.product_id = p.product_id
    GROUP BY v.date, p.category
), carted AS (
    SELECT c.date, s.category, count(DISTINCT c.user_id) AS carters
    FROM cart_item_added c JOIN sku_category s ON c.sku = s.sku
    GROUP BY c.date, s.category
), ordered AS (
    SELECT o.date, s.category, count(DISTINCT o.user_id) AS buyers
    FROM (SELECT date, user_id, unnest(lines) AS line FROM order_placed) o
    JOIN sku_category s ON o.line['sku'] = s.sku
    GROUP BY o.date, s.category
)
SELECT v.date, v.category, v.viewers,
       coalesce(c.carters, 0) AS carters,
       coalesce(o.buyers, 0) AS buyers,
       round(CAST(coalesce(c.carters, 0) AS DOUBLE) / v.viewers, 4) AS view_to_cart,
       round(CAST(coalesce(o.buyers, 0) AS DOUBLE) / v.viewers, 4) AS view_to_order
FROM viewed v
LEFT JOIN carted c ON c.date = v.date AND c.category = v.category
LEFT JOIN ordered o ON o.date = v.date AND o.category = v.category
ORDER BY v.date, v.category
