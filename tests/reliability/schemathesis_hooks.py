"""What the OpenAPI document says in words and JSON Schema cannot express, told to
schemathesis (loaded through SCHEMATHESIS_HOOKS by test_schemathesis.py).

- ``min_price`` must not be above ``max_price`` (a 400 otherwise): JSON Schema
  compares no two values, so generated cases that break it are not schema-valid
  in the document's own words (the parameters' descriptions) and are dropped.
Nothing else is filtered: bodies over the byte limit stay in, and their 413 is a
documented answer of every POST operation.
"""

import schemathesis


def _prices_ordered(values) -> bool:
    if not isinstance(values, dict):
        return True
    low, high = values.get("min_price"), values.get("max_price")
    try:
        return low is None or high is None or float(low) <= float(high)
    except (TypeError, ValueError):
        return True  # not numbers: a negative case, kept


@schemathesis.hook
def filter_case(context, case):
    body = case.body if isinstance(case.body, dict) else {}
    return _prices_ordered(case.query) and _prices_ordered(body.get("filters"))
