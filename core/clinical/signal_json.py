"""The early-warning signal's fitted model as JSON, so that the clinic database can keep it.

A :class:`core.clinical.signal.SignalModel` holds numbers, arrays and untranslated messages only
(no sentence in any language, no patient's row), so it can be written once per data set version
and settings and read back by every dashboard replica and after every restart
(:meth:`core.store.ClinicStore.clinic_signal_model`): fitting it on a national data set's million
rows takes seconds, reading it back milliseconds. JSON rather than pickle: reading a stored value
never runs code.

>>> import pandas as pd
>>> from core.clinical.signal import SignalSettings, fit_signal_model
>>> from core.demo import demo_clinic
>>> settings = SignalSettings(reliable_change=14, cutoff=63.5)
>>> model = fit_signal_model(demo_clinic(), settings)
>>> again = model_from_json(model_to_json(model))
>>> model_to_json(again) == model_to_json(model), again.fits[-1].fixed.tolist() == model.fits[-1].fixed.tolist()
(True, True)
>>> settings_key(settings) == settings_key(SignalSettings(reliable_change=14.0, cutoff=63.5))
True
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, fields

import numpy as np

from core.clinical.signal import CourseFit, Message, SignalModel, SignalSettings

#: Bumped whenever the model's fields or their meaning change: a stored model of another format
#: is refitted, never misread.
FORMAT = 1


def _encode(value):
    if isinstance(value, np.ndarray):
        return {"array": [_encode(v) for v in value.ravel().tolist()], "shape": list(value.shape),
                "dtype": str(value.dtype)}
    if isinstance(value, Message):
        return {"message": value.text, "values": [[k, _encode(v)] for k, v in value.values]}
    if isinstance(value, CourseFit):
        return {"fit": {f.name: _encode(getattr(value, f.name)) for f in fields(CourseFit)}}
    if isinstance(value, tuple):
        return {"tuple": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {"dict": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}  # 'nan', 'inf', '-inf'
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a signal model")


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "array" in value:
        return np.array([_decode(v) for v in value["array"]], dtype=value["dtype"]).reshape(value["shape"])
    if "message" in value:
        return Message(value["message"], tuple((k, _decode(v)) for k, v in value["values"]))
    if "fit" in value:
        return CourseFit(**{k: _decode(v) for k, v in value["fit"].items()})
    if "tuple" in value:
        return tuple(_decode(v) for v in value["tuple"])
    if "dict" in value:
        return {_decode(k): _decode(v) for k, v in value["dict"]}
    if "float" in value:
        return float(value["float"])
    raise ValueError(f"not a stored signal model value: {sorted(value)}")


def model_to_json(model: SignalModel) -> str:
    """``model`` as a JSON text (every field; arrays with their shape and type; NaN written out)."""
    return json.dumps({"format": FORMAT, "model": {f.name: _encode(getattr(model, f.name))
                                                   for f in fields(SignalModel)}},
                      allow_nan=False, separators=(",", ":"))


def model_from_json(text: str) -> SignalModel | None:
    """The model :func:`model_to_json` wrote; ``None`` for another format (then it is refitted)."""
    document = json.loads(text)
    if document.get("format") != FORMAT:
        return None
    return SignalModel(**{k: _decode(v) for k, v in document["model"].items()})


def settings_key(settings: SignalSettings) -> str:
    """The settings a model was fitted with, as a canonical text (numbers as floats, keys sorted):
    the key of a stored model."""
    plain = {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
             for k, v in asdict(settings).items()}
    return json.dumps(plain, sort_keys=True, allow_nan=False)
