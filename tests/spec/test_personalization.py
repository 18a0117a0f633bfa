"""Few-shot personalization: the feature extractor (a model cut at a layer), the SimpleShot
normalisation, the nearest-centroid classifier and the fine-tuned head, each checked
against a direct computation and on separable synthetic classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from edgetrain import ConfigError, DataError, Model, ModelFileError, StateError
from edgetrain import layers as L
from edgetrain import optimizers as O
from edgetrain.personalization import (
    FeatureExtractor,
    FewShotClassifier,
    FinetunedHead,
    NearestCentroid,
    backbone_layers,
    centred_unit,
)
from edgetrain.personalization.finetuned_head import EmbeddedRows, balanced_indices

Array = NDArray[Any]
RNG = np.random.default_rng(11)
IMAGES = RNG.random((13, 1, 6, 6)).astype(np.float32)


def backbone() -> Model:
    model = Model(
        [
            L.Input(shape=(1, 6, 6), name="image"),
            L.Conv2D(filters=4, kernel_size=3, padding="same", name="conv1"),
            L.BatchNormalization(name="bn1", activation="relu"),
            L.Pooling2D("max", pool_size=2, stride=2, name="pool1"),
            L.Flatten(name="flat"),
            L.FullyConnected(unit=8, name="fc1", activation="relu"),
            L.Dropout(dropout_rate=0.5, name="drop"),
            L.FullyConnected(unit=3, name="out", activation="softmax"),
        ],
        loss="cross",
    )
    model.compile(O.Adam(0.01), batch_size=4, seed=2)
    model.fit(IMAGES, RNG.integers(0, 3, size=13), epochs=2)
    return model


def truncated(model: Model, last: str) -> Model:
    """The same layers up to ``last`` as a model of their own, weights copied."""
    layers = model.layers[: [layer.name for layer in model.layers].index(last) + 1]
    cut = Model(layers)
    cut.compile(None, batch_size=len(IMAGES))
    cut.set_weights({n: w for n, w in model.get_weights().items() if n in cut.get_weights()})
    return cut


# -- the feature extractor ---------------------------------------------------------------------


@pytest.mark.parametrize("layer", ["bn1", "flat", "fc1"])
@pytest.mark.parametrize("batch_size", [1, 4, 13, 32])
def test_features_are_the_layers_inference_output(layer: str, batch_size: int) -> None:
    model = backbone()
    extractor = FeatureExtractor(model, layer, batch_size=batch_size)
    want = truncated(model, layer).predict(IMAGES).reshape(len(IMAGES), -1)
    got = extractor(IMAGES)
    assert got.shape == (13, extractor.dim) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if layer in ("bn1", "fc1"):  # after the layer's activation
        assert got.min() >= 0.0


def test_features_of_a_sample_do_not_depend_on_its_batch() -> None:
    """Inference mode: batch norm uses its moving statistics, dropout is off."""
    extractor = FeatureExtractor(backbone(), "drop", batch_size=4)
    whole = extractor(IMAGES)
    np.testing.assert_array_equal(extractor(IMAGES[5:6])[0], whole[5])
    np.testing.assert_array_equal(extractor(IMAGES), whole)


def test_the_cut_keeps_only_what_the_layer_depends_on() -> None:
    model = Model(
        [
            L.Input(shape=(4,), name="x"),
            L.FullyConnected(unit=3, name="left"),
            L.FullyConnected(unit=5, name="right", input_layers=["x"]),
            L.FullyConnected(unit=2, name="after_right"),
            L.Concat(name="both", input_layers=["left", "after_right"]),
        ]
    )
    model.compile(None, batch_size=2)
    assert [layer.name for layer in backbone_layers(model, "after_right")] == [
        "x",
        "right",
        "after_right",
    ]
    extractor = FeatureExtractor(model, "after_right")
    x = RNG.normal(size=(3, 4)).astype(np.float32)
    w = model.get_weights()
    hidden = x @ w["right:weight"] + w["right:bias"]
    want = hidden @ w["after_right:weight"] + w["after_right:bias"]
    np.testing.assert_allclose(extractor(x), want, rtol=1e-5, atol=1e-6)


def test_weights_are_borrowed_and_followed_through_a_recompile() -> None:
    model = backbone()
    extractor = FeatureExtractor(model, "fc1")
    before = extractor(IMAGES)
    weights = model.get_weights()
    weights["fc1:bias"] = weights["fc1:bias"] + 1.0
    model.set_weights(weights)
    assert np.all(extractor(IMAGES) >= before) and not np.array_equal(extractor(IMAGES), before)
    model.freeze(up_to="fc1")  # recompiles: the weights move to a new arena
    np.testing.assert_allclose(
        extractor(IMAGES), truncated(model, "fc1").predict(IMAGES).reshape(13, -1), rtol=1e-5
    )


def test_extraction_is_planned_smaller_than_the_whole_model() -> None:
    model = backbone()
    extractor = FeatureExtractor(model, "pool1", batch_size=4)
    assert extractor.plan is not None
    assert set(extractor.plan.external) == {
        "conv1:weight",
        "conv1:bias",
        "bn1:moving_mean",
        "bn1:moving_variance",
        "bn1:gamma",
        "bn1:beta",
    }
    model.compile(None, batch_size=4)
    assert 0 < extractor.plan.arena_bytes < model.plan().arena_bytes
    assert FeatureExtractor(model, "pool1", planner=None).plan is None


def test_extractor_errors() -> None:
    model = backbone()
    with pytest.raises(ConfigError, match="no such layer.*image, conv1"):
        FeatureExtractor(model, "conv9")
    with pytest.raises(StateError, match="compile"):
        FeatureExtractor(Model([L.Input(shape=(2,), name="x")]), "x")
    with pytest.raises(DataError, match="expects samples of shape"):
        FeatureExtractor(model, "flat")(np.zeros((2, 1, 5, 5), np.float32))


# -- SimpleShot normalisation ------------------------------------------------------------------


def test_centred_unit_is_centred_then_unit_length() -> None:
    f = RNG.normal(size=(6, 5))
    mean = RNG.normal(size=5)
    e = centred_unit(f, mean)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0)
    np.testing.assert_allclose(e * np.linalg.norm(f - mean, axis=1, keepdims=True), f - mean)
    assert not centred_unit(mean[None, :], mean).any()


# -- synthetic classes -------------------------------------------------------------------------

DIM = 12
CENTRES = np.random.default_rng(3).normal(size=(6, DIM)) * 2.0


def samples(
    classes: list[int], per_class: int, seed: int, spread: float = 0.8
) -> tuple[Array, Array]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.array(classes), per_class)
    x = CENTRES[y] + rng.normal(size=(len(y), DIM)) * spread + 5.0  # offset: centring matters
    return x.astype(np.float32), y


BASE = samples([0, 1, 2, 3], 60, seed=1)
SUPPORT = samples([4, 5], 5, seed=2)
TEST_BASE = samples([0, 1, 2, 3], 30, seed=3)
TEST_NEW = samples([4, 5], 30, seed=4)


def simpleshot(x: Array, support: list[tuple[Array, Array]], mean: Array, query: Array) -> Array:
    """The reference: centroids of CL2N features, nearest by Euclidean distance."""
    feats = np.concatenate([s[0] for s in support])
    labels = np.concatenate([s[1] for s in support])
    classes = list(dict.fromkeys(labels.tolist()))
    e = centred_unit(feats.astype(np.float64), mean)
    centroids = np.stack([e[labels == c].mean(axis=0) for c in classes])
    q = centred_unit(query.astype(np.float64), mean)
    d = ((q[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    return np.array(classes)[d.argmin(axis=1)]


def test_nearest_centroid_matches_simpleshot_with_the_base_mean() -> None:
    clf = NearestCentroid().fit_base(*BASE).fit(*SUPPORT)
    assert clf.classes_.tolist() == [0, 1, 2, 3, 4, 5] and clf.mean_from == "base"
    np.testing.assert_allclose(clf.mean_, BASE[0].mean(axis=0), rtol=1e-6)  # type: ignore[arg-type]
    query = np.concatenate([TEST_BASE[0], TEST_NEW[0]])
    want = simpleshot(query, [BASE, SUPPORT], BASE[0].mean(axis=0).astype(np.float64), query)
    np.testing.assert_array_equal(clf.predict(query), want)
    proba = clf.predict_proba(query)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert clf.score(*TEST_NEW) > 0.9 and clf.score(*TEST_BASE) > 0.9


def test_without_base_classes_the_mean_is_the_support_mean_and_fits_add_up() -> None:
    first = samples([0, 1], 5, seed=5)
    second = samples([2], 5, seed=6)
    clf = NearestCentroid().fit(*first)
    assert clf.mean_from == "support" and clf.classes_.tolist() == [0, 1]
    clf.fit(*second)
    once = NearestCentroid().fit(
        np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]])
    )
    np.testing.assert_allclose(clf.mean_, once.mean_, rtol=1e-6)  # type: ignore[arg-type]
    np.testing.assert_allclose(clf.centroids_, once.centroids_, rtol=1e-5, atol=1e-6)  # type: ignore[arg-type]
    query = samples([0, 1, 2], 10, seed=7)
    want = simpleshot(query[0], [first, second], once.mean_.astype(np.float64), query[0])  # type: ignore[union-attr]
    np.testing.assert_array_equal(clf.predict(query[0]), want)


def test_examples_of_a_base_class_refine_its_centroid() -> None:
    clf = NearestCentroid().fit_base(*BASE)
    base_centroid = clf.centroids_[0].copy()  # type: ignore[index]
    extra = samples([0], 5, seed=8, spread=3.0)
    clf.fit(*extra)
    assert clf.classes_.tolist() == [0, 1, 2, 3]
    embedded = clf.embed(np.concatenate([BASE[0][BASE[1] == 0], extra[0]]))
    np.testing.assert_allclose(clf.centroids_[0], embedded.mean(axis=0), rtol=1e-5, atol=1e-6)  # type: ignore[index]
    assert not np.allclose(clf.centroids_[0], base_centroid)  # type: ignore[index]


def test_string_labels_and_label_errors() -> None:
    clf = NearestCentroid().fit(SUPPORT[0], np.where(SUPPORT[1] == 4, "mug", "keys"))
    assert clf.classes_.tolist() == ["keys", "mug"]
    assert set(clf.predict(TEST_NEW[0]).tolist()) <= {"keys", "mug"}
    with pytest.raises(DataError, match="all be integers or all strings"):
        clf.fit(*SUPPORT)
    with pytest.raises(DataError, match="1-D"):
        NearestCentroid().fit(SUPPORT[0], SUPPORT[1][:3])
    with pytest.raises(DataError, match="integers or strings"):
        NearestCentroid().fit(SUPPORT[0], SUPPORT[1].astype(float))
    with pytest.raises(DataError, match="feature vectors"):
        NearestCentroid().fit(SUPPORT[0][0], SUPPORT[1][:1])
    with pytest.raises(DataError, match="values"):
        clf.predict(np.zeros((2, DIM + 1), np.float32))
    with pytest.raises(DataError, match="NaN"):
        NearestCentroid().fit(np.full((2, 3), np.nan), np.array([0, 1]))


def test_order_of_calls_is_checked() -> None:
    with pytest.raises(StateError, match="fit"):
        NearestCentroid().predict(SUPPORT[0])
    clf = NearestCentroid().fit(*SUPPORT)
    with pytest.raises(StateError, match="before fit"):
        clf.fit_base(*BASE)
    with pytest.raises(ConfigError, match="temperature"):
        NearestCentroid(temperature=0.0)


# -- the fine-tuned head -----------------------------------------------------------------------


def test_balanced_indices_give_every_class_the_largest_count() -> None:
    ids = np.array([0] * 7 + [1] * 2 + [2] * 3)
    chosen = balanced_indices(ids, 3, np.random.default_rng(0))
    assert np.bincount(ids[chosen]).tolist() == [7, 7, 7]
    assert np.bincount(chosen[ids[chosen] == 1]).max() <= 4  # each of 2 samples 3-4 times


def test_embedded_rows_read_across_parts_in_order() -> None:
    parts = [np.arange(12.0).reshape(4, 3), 100 + np.arange(6.0).reshape(2, 3)]
    ids = np.array([0, 1, 2, 3, 4, 5])
    rows = EmbeddedRows(parts, ids, np.array([5, 0, 4, 2]), lambda f: -f)
    assert len(rows) == 4
    inputs, labels = rows.take(np.array([0, 2, 3]))
    np.testing.assert_array_equal(
        inputs[0], -np.array([[103.0, 104, 105], [100, 101, 102], [6, 7, 8]])
    )
    assert labels.tolist() == [5, 4, 2]


def test_stored_bytes_count_what_each_classifier_keeps() -> None:
    ncm = NearestCentroid().fit_base(*BASE).fit(*SUPPORT)
    itemsize = BASE[0].itemsize
    assert ncm.stored_bytes() == {
        "support examples (features)": 10 * DIM * itemsize,
        "centroids": 6 * DIM * itemsize,
        "base class sums and counts": 4 * DIM * 8 + 4 * 8,
    }
    head = FinetunedHead(epochs=1, base_epochs=1, exemplars_per_class=3).fit_base(*BASE)
    head.fit(*SUPPORT)
    assert head.stored_bytes() == {
        "support examples (features)": 10 * DIM * itemsize,
        "kept base examples (features)": 4 * 3 * DIM * itemsize,
        "head weights": (DIM + 1) * 6 * itemsize,
    }


def test_head_learns_new_classes_and_keeps_the_base_ones() -> None:
    head = FinetunedHead(epochs=20, base_epochs=10, exemplars_per_class=10)
    head.fit_base(*BASE)
    assert head.score(*TEST_BASE) > 0.9
    assert head.weight_ is not None and head.weight_.shape == (DIM, 4)
    head.fit(*SUPPORT)
    assert head.classes_.tolist() == [0, 1, 2, 3, 4, 5]
    assert head.weight_.shape == (DIM, 6) and head.bias_ is not None and head.bias_.shape == (6,)
    assert head.score(*TEST_NEW) > 0.9 and head.score(*TEST_BASE) > 0.9
    proba = head.predict_proba(TEST_NEW[0])
    assert proba.shape == (60, 6)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    plan = head.training_plan
    assert plan is not None and head.head is not None
    assert plan.arena_bytes == head.head.plan().arena_bytes
    assert {"classes:weight:grad", "classes:weight:m"} <= set(plan.tensors)


def test_new_columns_start_imprinted_and_old_ones_copied() -> None:
    """With a vanishing learning rate the weights after ``fit`` are the starting ones."""
    head = FinetunedHead(epochs=1, base_epochs=5, learning_rate=1e-12, exemplars_per_class=4)
    head.fit_base(*BASE)
    assert head.weight_ is not None and head.bias_ is not None
    old_weight, old_bias = head.weight_.copy(), head.bias_.copy()
    head.fit(*SUPPORT)
    new_weight, new_bias = head.weight_, head.bias_
    np.testing.assert_allclose(new_weight[:, :4], old_weight, atol=1e-6)
    scale = np.linalg.norm(old_weight, axis=0).mean()
    for column, label in ((4, 4), (5, 5)):
        mean = head.embed(SUPPORT[0][SUPPORT[1] == label]).mean(axis=0)
        np.testing.assert_allclose(
            new_weight[:, column], scale * mean / np.linalg.norm(mean), rtol=1e-4, atol=1e-5
        )
    np.testing.assert_allclose(new_bias[4:], old_bias.mean(), atol=1e-6)


def test_head_without_base_classes_trains_on_the_support_alone() -> None:
    head = FinetunedHead(epochs=40).fit(*SUPPORT)
    assert head.mean_from == "support" and head.score(*TEST_NEW) > 0.9


def test_head_settings_are_checked() -> None:
    for kwargs in (
        {"epochs": 0},
        {"batch_size": 2.5},
        {"learning_rate": 0},
        {"exemplars_per_class": -1},
    ):
        with pytest.raises(ConfigError):
            FinetunedHead(**kwargs)  # type: ignore[arg-type]


def test_both_classifiers_take_images_through_the_extractor() -> None:
    model = backbone()
    extractor = FeatureExtractor(model, "flat", batch_size=4)
    labels = np.array([0, 1] * 6 + [0])
    for clf in (NearestCentroid(extractor), FinetunedHead(extractor, epochs=2)):
        clf.fit(IMAGES, labels)
        assert clf.predict(IMAGES).shape == (13,)
        assert 0.0 <= clf.score(IMAGES, labels) <= 1.0


# -- the tutorial ------------------------------------------------------------------------------


def test_few_shot_tutorial_runs(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from doctest_blocks import run_markdown

    docs = Path(__file__).resolve().parents[2] / "docs" / "tutorials"
    seen = run_markdown(docs / "few-shot.md", tmp_path)
    assert seen["ncm"].classes_.tolist() == list(range(10))
    x_test, y_test, new = seen["x_test"], seen["y_test"], seen["new"]
    assert seen["ncm"].score(x_test[new], y_test[new]) > 0.6
    assert seen["head"].score(x_test, y_test) > seen["before"] + 0.08


# -- files -------------------------------------------------------------------------------------


def test_nearest_centroid_round_trips_and_keeps_learning(tmp_path: Path) -> None:
    clf = NearestCentroid(temperature=0.5).fit_base(*BASE).fit(*SUPPORT)
    clf.save(tmp_path / "ncm.npz")
    again = FewShotClassifier.load(tmp_path / "ncm.npz")
    assert isinstance(again, NearestCentroid) and again.temperature == 0.5
    query = TEST_NEW[0]
    np.testing.assert_array_equal(again.predict_proba(query), clf.predict_proba(query))
    assert again.classes_.tolist() == clf.classes_.tolist() and again.mean_from == "base"
    more = samples([4], 5, seed=9)
    clf.fit(*more)
    again.fit(*more)
    np.testing.assert_array_equal(again.centroids_, clf.centroids_)  # type: ignore[arg-type]


def test_fine_tuned_head_round_trips_and_keeps_learning_identically(tmp_path: Path) -> None:
    head = FinetunedHead(epochs=3, base_epochs=2, exemplars_per_class=5, seed=4)
    head.fit_base(*BASE).fit(*SUPPORT)
    head.save(tmp_path / "head.npz")
    again = FinetunedHead.load(tmp_path / "head.npz")
    assert isinstance(again, FinetunedHead) and again.epochs == 3 and again.seed == 4
    np.testing.assert_array_equal(
        again.predict_proba(TEST_BASE[0]), head.predict_proba(TEST_BASE[0])
    )
    more = samples([5], 5, seed=10)
    head.fit(*more)
    again.fit(*more)
    np.testing.assert_array_equal(again.weight_, head.weight_)  # type: ignore[arg-type]


def test_string_labels_and_a_backbone_survive_a_file(tmp_path: Path) -> None:
    model = backbone()
    extractor = FeatureExtractor(model, "flat", batch_size=4)
    labels = np.array(["a", "b"] * 6 + ["a"])
    clf = NearestCentroid(extractor).fit(IMAGES, labels)
    clf.save(tmp_path / "c.npz")
    again = NearestCentroid.load(tmp_path / "c.npz", extractor)
    assert again.predict(IMAGES).tolist() == clf.predict(IMAGES).tolist()
    with pytest.raises(ModelFileError, match="fitted on 36 features, the extractor gives 8"):
        NearestCentroid.load(tmp_path / "c.npz", FeatureExtractor(model, "fc1"))


def test_bad_classifier_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="not fitted"):
        NearestCentroid().save(tmp_path / "x.npz")
    FinetunedHead(epochs=1).fit(*SUPPORT).save(tmp_path / "head.npz")
    with pytest.raises(ModelFileError, match="kind 'finetuned_head', not 'nearest_centroid'"):
        NearestCentroid.load(tmp_path / "head.npz")
    np.savez(tmp_path / "weights.npz", w=np.zeros(3))
    with pytest.raises(ModelFileError, match="weights.npz: is not a few-shot classifier file"):
        FewShotClassifier.load(tmp_path / "weights.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="not a readable"):
        FewShotClassifier.load(tmp_path / "junk.npz")
    with np.load(tmp_path / "head.npz") as archive:
        arrays = {k: archive[k] for k in archive.files if k != "weight"}
    np.savez(tmp_path / "cut.npz", **arrays)
    with pytest.raises(ModelFileError, match=r"missing the arrays \['weight'\]"):
        FewShotClassifier.load(tmp_path / "cut.npz")
