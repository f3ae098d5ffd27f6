{#
    Fails for every pair of versions of one `key` whose day ranges [valid_from, valid_to) overlap:
    a day must read one version of a record, never two.
#}
{% test history_without_overlaps(model, key) %}
    select a.{{ key }}, a.valid_from, b.valid_from as overlapping_valid_from
    from {{ model }} as a
    join {{ model }} as b
        on a.{{ key }} = b.{{ key }}
        and a.valid_from < b.valid_from
        and (a.valid_to is null or a.valid_to > b.valid_from)
{% endtest %}
