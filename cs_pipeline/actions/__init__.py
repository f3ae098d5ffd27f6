"""The actions layer: what happens after an alert fires.

    store.py     the actions store (SQLite or PostgreSQL) and every write to it; the warehouse's read copy
    channels.py  where messages go: Slack or the outbox folder, behind one interface
    protocol.py  the delivery protocol, once: record the attempt, post, record the outcome, look up doubts
    notify.py    which alert messages, digests and "resolved" notices exist
    weekly.py    the weekly CS-lead digest's parts (message, then map) and their channels
    planner.py   which tasks to create, which alerts to close, what to send to the task sinks
    sinks.py     the task sinks' calls
    resource.py  the store as a Dagster resource
    clicks.py    what a button click in Slack does to the store (pure rules + apply)
    listener.py  the Socket Mode listener behind `cs-pipeline slack-listen` (clicks, App Home)
    report.py    the rule report: per rule, how CSMs acted on its alerts

It imports from `logic`, `messages`, `resources` and `sinks`, never from `assets`, `jobs` or
`sensors`, which import it.
"""
