"""Parses Prometheus text with prometheus_client's own parser (Debian's
python3-prometheus-client) and prints what it read as JSON, for metrics_test:
[{"name", "type", "documentation", "samples": [{"name", "labels", "value"}]}].
Values that JSON cannot hold (+Inf, -Inf, NaN) are printed as strings.
Exit 1, with the parser's message, when the text does not parse."""
import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def value(v):
    return v if math.isfinite(v) else repr(v)


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        text = f.read()
    try:
        families = [{
            "name": family.name,
            "type": family.type,
            "documentation": family.documentation,
            "samples": [{"name": s.name, "labels": s.labels, "value": value(s.value)} for s in family.samples],
        } for family in text_string_to_metric_families(text)]
    except Exception as e:  # the parser's ValueError (or worse): the text is not valid
        print(f"prometheus_client cannot parse the text: {e!r}", file=sys.stderr)
        return 1
    json.dump(families, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
