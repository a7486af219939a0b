"""Issue 28 (7): errors that say the cause — a TensorRT internal assertion, a parser error on dims named alike, a raw
TensorFlow AttributeError: the one-line error names the model, the cause in words and the next step; the job log
(stderr) keeps the full traceback."""

import pytest

from engine_factory.backends.core import diagnose
from engine_factory.frameworks.tensorflow import tf_error


def test_internal_assertion_says_cause_and_next_step():
    msg = ["[convBaseRunner.cpp::execute::295] Error Code 2: Internal Error (Assertion matchPattern(...) failed.)"]
    hint = diagnose(msg)
    assert "cause: an internal assertion inside the TensorRT library" in hint
    assert "next: try another precision" in hint


def test_dims_named_alike_say_cause_and_next_step():
    msg = ["Input dimensions with this name: ? were given different values (224 vs 160)"]
    hint = diagnose(msg)
    assert "share a name" in hint and "distinct names" in hint


def test_unknown_message_gets_no_made_up_cause():
    assert diagnose(["Network has dynamic or shape inputs, but no optimization profile has been defined."]) == ""


def test_raw_tensorflow_attribute_error_is_explained_and_traced(capsys):
    def restore():
        raise AttributeError("'_UserObject' object has no attribute 'add_slot'")

    with pytest.raises(AttributeError) as raw:
        restore()
    err = tf_error("cannot load the SavedModel", raw.value, model="ranker", path="/zoo/ranker")
    text = str(err)
    assert "ranker" in text and "AttributeError" in text
    assert "cause: the SavedModel was written by TensorFlow 2.x/Keras 2" in text
    # the advice is one that can work: the object graph is restored whole, so no signature setting avoids it
    assert "next: it is then loaded by its signature alone" in text and "framework: onnx" in text
    assert "\n" not in text.split("(full traceback in the job log)")[0]
    log = capsys.readouterr().err
    assert "Traceback (most recent call last)" in log and "in restore" in log and "add_slot" in log


def test_load_keras_failure_names_model_and_logs_traceback(tmp_path, capsys):
    from engine_factory.errors import FactoryError
    from engine_factory.frameworks.tensorflow import load_keras

    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(FactoryError, match="cannot load the Keras model") as e:
        load_keras(str(bad), model="k")
    assert "'k'" in str(e.value) and "full traceback in the job log" in str(e.value)
    assert "Traceback (most recent call last)" in capsys.readouterr().err
