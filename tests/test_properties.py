"""Property-based tests of everything that parses bytes from outside.

A fingerprint file may be truncated, tampered with or not a fingerprint at all;
a suspect's API or a client may send any JSON. Whatever comes in, parsing it
either gives back exactly what was sent or raises the tool's own error, never
anything else.
"""

import io
import json
import os
import zipfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fingerprinting import artifact
from fingerprinting import suspects
from fingerprinting.suspects import protocols

# The same examples on every run, so that the suite's verdict does not depend on
# luck; HYPOTHESIS_EXPLORE=1 draws new ones (how the bool-shape bug was found).
SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=not os.environ.get("HYPOTHESIS_EXPLORE"),
)


@st.composite
def fingerprints(draw):
    n = draw(st.integers(0, 6))
    d = draw(st.integers(0, 6))
    shape = draw(st.sampled_from([(2, 2, 1), (3, 2, 3), (1, 1, 1)]))
    k = draw(st.integers(2, 12))
    pixels = lambda m: np.asarray(
        draw(
            st.lists(
                st.integers(0, 255),
                min_size=m * int(np.prod(shape)),
                max_size=m * int(np.prod(shape)),
            )
        ),
        np.uint8,
    ).reshape((m, *shape))
    labels = lambda m: np.asarray(
        draw(st.lists(st.integers(0, k - 1), min_size=m, max_size=m)), np.int32
    )
    text = st.text(st.characters(codec="utf-8"), max_size=8)
    meta = {
        "num_classes": k,
        "input_shape": list(shape),
        "dataset": draw(text),
        "class_names": draw(st.lists(text, min_size=k, max_size=k)),
        "theta": draw(st.floats(0.01, 1.0)),
    }
    return artifact.Fingerprint(
        x=pixels(n),
        original=pixels(n),
        keys=labels(n),
        truth=labels(n),
        conferrability=np.asarray(
            draw(st.lists(st.floats(0, 1, width=32), min_size=n, max_size=n)), np.float32
        ),
        meta=meta,
        decoy_x=pixels(d),
        decoy_truth=labels(d),
    )


def _same(a: artifact.Fingerprint, b: artifact.Fingerprint) -> bool:
    arrays = artifact.ARRAYS + artifact.DECOY_ARRAYS
    return (
        all(
            np.array_equal(getattr(a, k), getattr(b, k))
            and getattr(a, k).dtype == getattr(b, k).dtype
            for k in arrays
        )
        and dict(a.meta, format_version=artifact.FORMAT_VERSION) == b.meta
    )


@SETTINGS
@given(fingerprints())
def test_every_valid_file_round_trips_exactly(fp):
    assert _same(fp, artifact.from_bytes(artifact.to_bytes(fp)))


@SETTINGS
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_raise_only_the_tools_error(data):
    try:
        artifact.from_bytes(data)
    except artifact.FingerprintError:
        pass


def _zip_of(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, payload in members.items():
            z.writestr(name, payload)
    return buf.getvalue()


@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(["meta.npy", "sha256.npy", "x.npy", "keys.npy", "decoy_x.npy", "a.npy"]),
        st.binary(max_size=256),
        max_size=5,
    )
)
def test_arbitrary_zip_members_raise_only_the_tools_error(members):
    try:
        artifact.from_bytes(_zip_of(members))
    except artifact.FingerprintError:
        pass


@SETTINGS
@given(fingerprints(), st.data())
def test_damaged_files_are_refused_or_unchanged(fp, data):
    blob = bytearray(artifact.to_bytes(fp))
    how = data.draw(st.sampled_from(["truncate", "flip", "insert"]))
    at = data.draw(st.integers(0, len(blob) - 1))
    if how == "truncate":
        blob = blob[:at]
    elif how == "flip":
        blob[at] ^= data.draw(st.integers(1, 255))
    else:
        blob[at:at] = data.draw(st.binary(min_size=1, max_size=16))
    try:
        loaded = artifact.from_bytes(bytes(blob))
    except artifact.FingerprintError:
        return
    assert _same(fp, loaded)  # a change that misses the content (zip padding) is harmless


# ----------------------------------------------------------------------------
# Both HTTP protocols. Whatever JSON a suspect answers, the client gives valid
# labels or one SuspectError; whatever JSON a client sends, the server's parser
# gives pixels in [0, 1] or one ValueError. Valid messages round-trip exactly.

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=24,
)
numbers = st.lists(
    st.lists(
        st.integers(-3, 12) | st.floats(-1, 11) | st.just(float("nan")), min_size=1, max_size=3
    ),
    max_size=4,
)
v1_answers = json_values | st.fixed_dictionaries({"predictions": json_values | numbers})
v2_answers = json_values | st.fixed_dictionaries(
    {
        "outputs": st.lists(
            st.fixed_dictionaries(
                {"name": st.text(max_size=3), "shape": json_values, "data": json_values | numbers}
            ),
            max_size=2,
        )
    }
)


def _labels_or_suspect_error(decode, answer, n=4, k=10):
    try:
        labels = suspects.answers_to_labels(decode(answer, "api"), n, k, "api")
    except suspects.SuspectError:
        return
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert labels.min() >= 0 and labels.max() < k


@SETTINGS
@given(v1_answers)
def test_v1_answers_give_labels_or_one_error(answer):
    _labels_or_suspect_error(protocols.decode_v1, answer)


@SETTINGS
@given(v2_answers)
def test_v2_answers_give_labels_or_one_error(answer):
    _labels_or_suspect_error(protocols.decode_v2, answer)


v1_requests = json_values | st.fixed_dictionaries({"instances": json_values | numbers})
v2_requests = json_values | st.fixed_dictionaries(
    {
        "inputs": st.lists(
            st.fixed_dictionaries(
                {
                    "name": st.text(max_size=3),
                    "datatype": st.sampled_from(["UINT8", "FP32", "INT64", "BYTES"]) | json_values,
                    "shape": json_values | st.lists(st.integers(0, 4), max_size=3),
                    "data": json_values | st.lists(st.integers(-2, 300), max_size=12),
                }
            ),
            max_size=2,
        )
    }
)


@SETTINGS
@given(
    st.sampled_from([protocols.parse_v1_request, protocols.parse_v2_request]),
    v1_requests | v2_requests,
)
def test_requests_give_unit_pixels_or_one_error(parse, request):
    try:
        x = parse(request)
    except ValueError:
        return
    assert x.dtype == np.float32 and (x.size == 0 or (x.min() >= 0 and x.max() <= 1))


@SETTINGS
@given(
    st.integers(1, 5).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 255), min_size=n * 12, max_size=n * 12).map(
                lambda v: np.asarray(v, np.uint8).reshape(-1, 2, 2, 3)
            ),
            st.lists(st.integers(0, 9), min_size=n, max_size=n).map(np.asarray),
        )
    )
)
def test_valid_messages_round_trip_exactly(x_and_labels):
    x, labels = x_and_labels
    through = lambda message: json.loads(json.dumps(message))
    for encode, parse in (
        (protocols.encode_v1, protocols.parse_v1_request),
        (protocols.encode_v2, protocols.parse_v2_request),
    ):
        np.testing.assert_array_equal(parse(through(encode(x))), x.astype(np.float32) / 255.0)
    scores = np.eye(10, dtype=np.float32)[labels]
    for answer, decode in (
        (protocols.encode_v1_answer(labels), protocols.decode_v1),
        (protocols.encode_v2_answer(labels, "m"), protocols.decode_v2),
        (protocols.encode_v1_answer(scores), protocols.decode_v1),
        (protocols.encode_v2_answer(scores, "m"), protocols.decode_v2),
    ):
        got = suspects.answers_to_labels(decode(through(answer), "api"), len(labels), 10, "api")
        np.testing.assert_array_equal(got, labels)
