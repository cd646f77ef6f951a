"""Reference server for `make bench`: the AWS MLOps workshop's serving design, with our model.

The workshop's model/app.py is a Flask app behind gunicorn sync workers: /ping answers, and
/invocations reads the CSV body with ``pandas.read_csv(header=None)``, one-hot encodes ``sex`` with
pandas, predicts and writes the predictions back as CSV. This is that design, written idiomatically
(model loaded once per worker at import, no per-request reloads), serving the same model files as
our server (model.ubj + schema.json) through an XGBoost ``Booster`` and a ``DMatrix``. It is the
yardstick the benchmark compares against, so it must stay honest: do not slow it down.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import flask
import pandas as pd
import xgboost as xgb


class Model:
    """The booster plus what the schema says about raw and encoded columns."""

    def __init__(self, model_dir: str | Path) -> None:
        root = Path(model_dir)
        self.booster = xgb.Booster()
        self.booster.load_model(str(root / "model.ubj"))
        schema = json.loads((root / "schema.json").read_text(encoding="utf-8"))
        features = schema["features"]
        self.columns = [f["name"] for f in features]
        self.categories = {f["name"]: f["categories"] for f in features if f["type"] == "category"}
        self.encoded = [
            f"{f['name']}_{c}" if f["type"] == "category" else f["name"]
            for f in features
            for c in (f.get("categories") or [None])
        ]

    def predict_csv(self, text: str) -> str:
        """Raw CSV rows in, one prediction per line out (pandas all the way, as the workshop)."""
        frame = pd.read_csv(io.StringIO(text), header=None, names=self.columns)
        for name, cats in self.categories.items():
            frame[name] = pd.Categorical(frame[name], categories=cats)
        encoded = pd.get_dummies(frame, columns=list(self.categories), dtype="float32")
        predictions = self.booster.predict(xgb.DMatrix(encoded[self.encoded]))
        out = io.StringIO()
        pd.DataFrame({"prediction": predictions}).to_csv(out, header=False, index=False)
        return out.getvalue()


def create_app(model_dir: str | Path) -> flask.Flask:
    """The Flask app with the model loaded once (per gunicorn worker)."""
    model = Model(model_dir)
    app = flask.Flask(__name__)

    @app.route("/ping", methods=["GET"])
    def ping() -> flask.Response:
        return flask.Response(response="\n", status=200, mimetype="application/json")

    @app.route("/invocations", methods=["POST"])
    def invocations() -> flask.Response:
        if flask.request.content_type != "text/csv":
            return flask.Response("This predictor only supports CSV data", status=415)
        result = model.predict_csv(flask.request.data.decode("utf-8"))
        return flask.Response(response=result, status=200, mimetype="text/csv")

    return app
