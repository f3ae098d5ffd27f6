{#
    The audience columns of an account on a day, point in time (CONTRACT.md §3, docs/kpis.md):
    `account_versions()` selects marts.dim_accounts_history as (account_id, valid_from, segment,
    owner_email), segment 'unknown' and owner 'unassigned' when empty. Join it with
        asof left join versions on versions.account_id = x.account_id and versions.valid_from <= x.day
    to read the version valid on that day. An asof join takes the latest version that began on or
    before the day, so an account removed from the export before it keeps its last version, and a
    day before the first load reads the earliest one (its valid_from is 1900-01-01).
#}
{% macro account_versions() %}
    select
        account_id,
        valid_from,
        coalesce(nullif(segment, ''), 'unknown') as segment,
        coalesce(nullif(owner_email, ''), 'unassigned') as owner_email
    from {{ ref('dim_accounts_history') }}
{% endmacro %}
