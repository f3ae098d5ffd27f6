-- One row per account and version, with the days it is valid on: what a past day D reads
-- (valid_from <= D and (valid_to is null or D < valid_to)). A load's versions are valid from
-- the day of the load; a version replaced on the day it was loaded held on no whole day, and
-- is left out. Each account's earliest version is extended back (valid_from 1900-01-01): days
-- before the first load use the earliest record. recorded_from is the day its load took effect,
-- from which the version's status counts.
{{ history_days('stg_raw__accounts_history', 'account_id',
    ['name', 'segment', 'owner_email', 'plan', 'licenses', 'status', 'created_at']) }}
