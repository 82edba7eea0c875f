"""Second half of the dashboards import (start.sh init), in Superset's environment:

1. `superset import-dashboards` overwrites dashboards but leaves existing databases, datasets and
   charts alone, so an edited chart, a new view column or a new read-only password would never
   land. Import the same zip again as databases, datasets and charts with overwrite (matched by
   uuid: ids stay, nothing is duplicated).
2. Point every native filter of the MBATS dashboards at all the charts of its dashboard: the
   import keeps `chartsInScope` as written, but chart ids only exist after it; without them
   Superset applies a filter only to the charts of the filter's own dataset.

    python sync_assets.py BUNDLE.zip USERNAME
"""

from __future__ import annotations

import json
import sys
import zipfile

import yaml
from flask import g

from superset.app import create_app

TYPES = (("database", "Database"), ("dataset", "SqlaTable"), ("chart", "Slice"))


def main(zip_path: str, username: str) -> None:
    app = create_app()
    with app.app_context():
        from superset import db, security_manager
        from superset.commands.chart.importers.v1 import ImportChartsCommand
        from superset.commands.database.importers.v1 import ImportDatabasesCommand
        from superset.commands.dataset.importers.v1 import ImportDatasetsCommand
        from superset.commands.importers.v1.utils import get_contents_from_bundle
        from superset.models.dashboard import Dashboard

        g.user = security_manager.find_user(username=username)
        with zipfile.ZipFile(zip_path) as bundle:
            contents = get_contents_from_bundle(bundle)
        metadata = yaml.safe_load(contents["metadata.yaml"])
        commands = {"database": ImportDatabasesCommand, "dataset": ImportDatasetsCommand, "chart": ImportChartsCommand}
        for kind, type_ in TYPES:
            typed = dict(contents, **{"metadata.yaml": yaml.safe_dump(dict(metadata, type=type_))})
            commands[kind](typed, overwrite=True).run()
            print(f"superset: {kind}s synced")

        for dashboard in db.session.query(Dashboard).filter(Dashboard.slug.like("mbats-%")).all():
            meta = json.loads(dashboard.json_metadata or "{}")
            position = json.loads(dashboard.position_json or "{}")
            chart_ids = sorted(node["meta"]["chartId"] for node in position.values()
                               if isinstance(node, dict) and node.get("type") == "CHART")
            filters = meta.get("native_filter_configuration", [])
            for native_filter in filters:
                native_filter["chartsInScope"] = chart_ids
            dashboard.json_metadata = json.dumps(meta, sort_keys=True)
            print(f"superset: {dashboard.slug}: {len(filters)} filter(s) over {len(chart_ids)} charts")
        db.session.commit()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
