{#
    The versions of a staged history model (valid_from_at, valid_to_at) as ranges of whole days:
    valid_from (inclusive), valid_to (exclusive, NULL while current), recorded_from (the day the
    version's load took effect) and is_current. A version retired on the day it was recorded is
    dropped (the day's last version holds for it); each key's earliest remaining version is
    extended back to 1900-01-01, so days before the first load read the earliest record.
#}
{% macro history_days(model, key, columns) %}
with versions as (
    select
        {{ key }},
        {{ columns | join(', ') }},
        cast(valid_from_at as date) as recorded_from,
        cast(valid_to_at as date) as valid_to
    from {{ ref(model) }}
),

whole_days as (
    select * from versions
    where valid_to is null or valid_to > recorded_from
)

select
    {{ key }},
    case
        when row_number() over (partition by {{ key }} order by recorded_from) = 1 then date '1900-01-01'
        else recorded_from
    end as valid_from,
    valid_to,
    recorded_from,
    valid_to is null as is_current,
    {{ columns | join(', ') }}
from whole_days
{% endmacro %}
