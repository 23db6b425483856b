-- One row per day, type and country: all events (anonymous ones too) and the exact distinct users of that day.
-- Do not add unique_users up over days (a user active on two days counts twice): use bi.event_usage for ranges.
CREATE OR REPLACE VIEW bi.daily_event_usage
COMMENT 'Per day, type and country: events and the distinct users of that day'
SECURITY INVOKER AS
SELECT event_date, event_type, country, events, unique_users
FROM lake.daily_event_stats
