-- Events per month, type, country and user, from lake.monthly_user_activity (the rollup of the daily aggregates);
-- the row with a NULL user_id holds the month's anonymous events. The typical question over whole months reads
-- one partition per month here instead of one per day in bi.event_usage, and one row per user and month:
--   SELECT sum(events) AS events, count(DISTINCT user_id) AS users FROM bi.monthly_event_usage
--   WHERE event_type = 'login' AND country = 'DE' AND event_month BETWEEN DATE '2024-07-01' AND DATE '2024-12-01'
-- Same answer as bi.event_usage over the same days (exact unique users); ranges that start or end mid-month: use that.
CREATE OR REPLACE VIEW bi.monthly_event_usage
COMMENT 'Events per month (first day), type, country and user (NULL user: anonymous); sum events, count DISTINCT user_id'
SECURITY INVOKER AS
SELECT event_month, event_type, country, user_id, events, active_days
FROM lake.monthly_user_activity
