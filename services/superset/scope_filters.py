"""Point every native filter of the MBATS dashboards at all the charts of its dashboard.

`superset import-dashboards` keeps `chartsInScope` as written, but chart ids only exist after the
import; without them Superset applies a filter only to charts of the filter's own dataset. This
runs after the import (start.sh init) in Superset's environment; Superset then applies each filter
to every chart whose dataset has the filter's column. Idempotent.
"""

from __future__ import annotations

import json

from superset.app import create_app

app = create_app()
with app.app_context():
    from superset import db
    from superset.models.dashboard import Dashboard

    for dashboard in db.session.query(Dashboard).filter(Dashboard.slug.like("mbats-%")).all():
        metadata = json.loads(dashboard.json_metadata or "{}")
        position = json.loads(dashboard.position_json or "{}")
        chart_ids = sorted(node["meta"]["chartId"] for node in position.values()
                           if isinstance(node, dict) and node.get("type") == "CHART")
        changed = False
        for native_filter in metadata.get("native_filter_configuration", []):
            if native_filter.get("chartsInScope") != chart_ids:
                native_filter["chartsInScope"] = chart_ids
                changed = True
        if changed:
            dashboard.json_metadata = json.dumps(metadata, sort_keys=True)
        print(f"superset: {dashboard.slug}: {len(metadata.get('native_filter_configuration', []))} filter(s) "
              f"over {len(chart_ids)} charts{' (updated)' if changed else ''}")
    db.session.commit()
