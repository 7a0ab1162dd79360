"""The source declarations (`sources.py`) as SQL: a value's exact conversion from its text,
the reason a row is rejected (the first intrinsic rule it breaks) or held (the first rule about
other data it breaks), and the cheaper checks the fast path uses to prove a row clean.

Both paths are built from the same patterns, so they cannot disagree about a value.
"""

from __future__ import annotations

from warehouse.ingest.sources import DATE_FORMAT, DECIMAL, EXACT_TYPES, IDENTIFIER, Source

# Control characters (but tab) have no place in a value: a NUL byte in a name is a broken
# export, not data.
_CONTROL = r"[\x00-\x08\x0b-\x1f\x7f]"


def _shown(column_sql: str) -> str:
    """SQL for a value as a reject reason shows it: quoted, cut at 40 characters."""
    return (
        f"'''' || left({column_sql}, 40) || case when length({column_sql}) > 40 "
        "then '…' else '' end || ''''"
    )


def _conversion(name: str, type_: str) -> tuple[str, list[str]]:
    """The SQL of a column's typed value from its text, and the `when` branches giving the
    reason for text that is not exactly of the type (evaluated only on non-blank text)."""
    text = f'"{name}"'
    if type_ == "VARCHAR":
        # A blank value is a missing one: a parent company of two spaces is not a company.
        value = f"case when trim({text}) = '' then null else {text} end"
        return value, [
            f"when regexp_matches({text}, '{_CONTROL}') then '{name} holds a control character'"
        ]
    value = _value(text, type_)
    if decimal := DECIMAL.fullmatch(type_):
        whole, scale = int(decimal[1]) - int(decimal[2]), int(decimal[2])
        return value, [
            f"when regexp_full_match({text}, '-?[0-9]+\\.[0-9]{{{scale + 1},}}') "
            f"then '{name} has more than {scale} decimal places: ' || {_shown(text)}",
            f"when not regexp_full_match({text}, '-?[0-9]{{1,{whole}}}(\\.[0-9]{{1,{scale}}})?') "
            f"then '{name} is not a decimal number of at most {whole} digits: ' || {_shown(text)}",
        ]
    pattern, description = EXACT_TYPES[type_]
    inexact = f"{value} is null"
    if pattern:
        inexact = f"not regexp_full_match({text}, '{pattern}') or {inexact}"
    return value, [f"when {inexact} then '{name} is not {description}: ' || {_shown(text)}"]


def _value(text: str, type_: str) -> str:
    """SQL for the typed value of `text`, NULL when it is not one: a date as the reader parses
    it with DATE_FORMAT, any other type cast (exact only where its pattern holds)."""
    if type_ == "DATE":
        return f"try_strptime({text}, '{DATE_FORMAT}')::date"
    return f"try_cast({text} as {type_})"


def reader_types(source: Source) -> dict[str, str]:
    """The type each column is read as by the fast path's CSV reader, whose parse proves the
    value exact or rejects its line: a date (DATE_FORMAT, as `_value` reads it), an accepted
    value (an ENUM, matched exactly as `in` matches it). The rest is text, proven by its pattern:
    the reader's own parse would round `1000000.5` into a BIGINT and read `0x10` as 16, a
    decimal's scale is only in its text, and free text has no type to parse."""
    types = {name: "VARCHAR" for name in source.columns}
    for name, type_ in source.columns.items():
        if type_ == "DATE":
            types[name] = "DATE"
    for name, accepted in source.accepted.items():
        types[name] = "ENUM(" + ", ".join(f"'{v}'" for v in accepted) + ")"
    return types


def clean_sql(source: Source, columns: list[str], typed: dict[str, str] | None = None) -> str:
    """SQL true for a parsed row whose values in `columns` are exactly of their types and
    allowed: what `checked_sql` would give no type reason, found without finding reasons. Its
    fields are text but those `typed` (`reader_types`), which the reader proved: present is
    enough.

    A sufficient condition built from the same patterns, cheap enough for every row of a large
    load; a row it does not pass goes to `checked_sql`, which says why.
    """
    conditions = []
    for name in columns:
        type_, text = source.columns[name], f'"{name}"'
        if (typed or {}).get(name, "VARCHAR") != "VARCHAR":
            exact = f"{text} is not null"
        elif name in source.identifiers:
            exact = f"regexp_full_match({text}, '{IDENTIFIER[0]}')"
        elif name in source.accepted:
            listed = ", ".join(f"'{v}'" for v in source.accepted[name])
            exact = f"{text} in ({listed})"
        elif type_ == "VARCHAR":
            # Not blank, and no control character (the class of _CONTROL, negated).
            exact = f"trim({text}) <> '' and regexp_full_match({text}, '[^{_CONTROL[1:-1]}]*')"
        elif decimal := DECIMAL.fullmatch(type_):
            whole, scale = int(decimal[1]) - int(decimal[2]), int(decimal[2])
            exact = f"regexp_full_match({text}, '-?[0-9]{{1,{whole}}}(\\.[0-9]{{1,{scale}}})?')"
        else:
            pattern = EXACT_TYPES[type_][0]
            exact = f"{_value(text, type_)} is not null"
            if pattern:
                exact = f"regexp_full_match({text}, '{pattern}') and {exact}"
        conditions.append(exact if name in source.required else f"{text} is null or ({exact})")
    return " and ".join(f"({condition})" for condition in conditions)


def clean_values_sql(source: Source, typed: dict[str, str]) -> str:
    """The select list of a clean row's values, by column name: as the reader typed it
    (`reader_types`), or its text, which is its value (never blank), cast when the column is not
    text (`try_cast`: a filter on the values may be evaluated before the one on the text)."""
    return ", ".join(
        f'"{name}" as {name}'
        if type_ == "VARCHAR"
        else f'cast("{name}" as {type_}) as {name}'
        if typed[name] != "VARCHAR"
        else f'try_cast("{name}" as {type_}) as {name}'
        for name, type_ in source.columns.items()
    )


def rules_hold_sql(source: Source, file_month: str) -> str:
    """SQL true for a row of typed values that breaks none of the source's row rules, with
    `file_month` the SQL of the month named in its file's name."""
    return (
        " and ".join(
            f"not coalesce({rule.violated_when.replace('$file_month', file_month)}, false)"
            for rule in source.rules
        )
        or "true"
    )


def checked_sql(source: Source) -> str:
    """The parsed rows of file `$file` (the temporary table `_parsed`, every field as text) with
    their typed values, `_reason` (the first intrinsic rule the row breaks, or NULL) and `_hold`
    (for a row without `_reason`: the first rule about other data it breaks, or NULL for a row
    to load).

    Duplicates within the file are judged among rows that break no rule, so a bad row never
    makes a later good row with the same key look like a duplicate.
    """
    values, whens = [], []
    for name in source.required:
        whens.append(f"when nullif(trim(\"{name}\"), '') is null then 'missing {name}'")
    for name, type_ in source.columns.items():
        value, reasons = _conversion(name, type_)
        values.append(f"{value} as {name}")
        for reason in reasons:
            condition, outcome = reason.removeprefix("when ").split(" then ", 1)
            whens.append(f'when "{name}" is not null and ({condition}) then {outcome}')
    for name in source.identifiers:
        pattern, description = IDENTIFIER
        whens.append(
            f"when not regexp_full_match(\"{name}\", '{pattern}') "
            f"then '{name} must be {description}: ' || {_shown(chr(34) + name + chr(34))}"
        )
    for name, accepted in source.accepted.items():
        listed = ", ".join(f"'{v}'" for v in accepted)
        whens.append(
            f"when \"{name}\" not in ({listed}) then '{name} ' || "
            f"{_shown(chr(34) + name + chr(34))} || ' is not one of {', '.join(accepted)}'"
        )
    rules = " ".join(f"when {rule.violated_when} then '{rule.reason}'" for rule in source.rules)
    key = ", ".join(source.key)
    holds = [
        f"when {ref.column} not in (select {ref.column} from raw.{ref.table}) then '{ref.reason}'"
        for ref in source.references
    ]
    elsewhere, join, other = "", "", "null"
    if source.unique_across_files:
        holds.append(
            "when _other_file is not null "
            "then 'duplicate of a row already loaded from ' || _other_file"
        )
        # The semi join scans raw.<table> only for the file's keys (DuckDB pushes the file's
        # key range into the scan), not the whole table.
        elsewhere = f"""
        elsewhere as (
            select {key}, min(_source_file) as _other_file
            from raw.{source.table} semi join valued using ({key})
            where _source_file <> $file
            group by {key}
        ),"""
        join, other = f"left join elsewhere using ({key})", "elsewhere._other_file"
    hold = f"case {' '.join(holds)} end" if holds else "null"
    return f"""
        with parsed as (
            -- With insertion order preserved, rowid is the record's position in the file.
            select rowid as _ordinal, * from _parsed
        ),
        typed as (
            select _ordinal, case {" ".join(whens)} end as _type_reason, {", ".join(values)}
            from parsed
        ),
        valued as (
            -- Rules judge typed values, so only rows whose values are all exact.
            select * exclude (_type_reason),
                coalesce(_type_reason, {f"case {rules} end" if rules else "null"}) as _rule_reason
            from typed
        ),{elsewhere}
        ruled as (
            select valued.*, {other} as _other_file,
                case
                    when _rule_reason is not null then _rule_reason
                    when row_number() over (
                        partition by _rule_reason is null, {key} order by _ordinal
                    ) > 1 then 'duplicate of an earlier row with the same {key}'
                end as _reason
            from valued {join}
        )
        select * exclude (_rule_reason),
            case when _reason is null then {hold} end as _hold
        from ruled
    """
