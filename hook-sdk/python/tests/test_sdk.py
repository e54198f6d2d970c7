"""Unit tests of the Python hook SDK: the same cases as the Rust SDK's
tests, so both produce the same predictions and messages."""

import json
import struct
import unittest

from componentize_py_types import Err
from wit_world.imports import types as T

from cls_hooks import (
    BBox, BadConfig, BadInput, Context, Failed, LabelConfig, Outputs, PreOutput, Prediction,
    RawJson, Region, RegionIds, Transform, jsonenc, ops, parse_class_names, rle, string_tensor,
    tensor,
)  # fmt: skip
from cls_hooks.export import post_json, pre_output, run_post_hook, run_pre_hook

ORIENTATION = """<View>
  <Image name="image" value="$image"/>
  <Choices name="orientation" toName="image" choice="single">
    <Choice value="0"/><Choice value="90"/><Choice value="180"/><Choice value="270"/>
  </Choices>
</View>"""


def wit_context(label_config="<View/>", metadata=(), task_id=3, carry=None, datapoints=()):
    return T.Context(
        task_json='{"id": 3, "data": {"image": "x.png"}}', task_id=task_id, label_config=label_config,
        model_version="v1", interactive_context=None, model_inputs=[], model_outputs=[],
        model_metadata=list(metadata), datapoints=list(datapoints), carry=carry,
    )  # fmt: skip


def raw_tensor(name, dtype, shape, data):
    return T.Tensor(name, dtype, shape, T.TensorData_Bytes(data))


class Tensors(unittest.TestCase):
    def test_every_numeric_type_round_trips(self):
        for dtype, values in [
            ("f32", [1.5, -2.0]), ("f64", [1.5, -2.0]), ("i64", [-(2**63), 7]), ("i32", [2**31 - 1, -7]),
            ("u8", [0, 255]), ("i8", [-128, 127]), ("bool", [True, False]),
        ]:  # fmt: skip
            t = tensor("t", [2], values, dtype=dtype)
            self.assertEqual(t.dtype, dtype)
            self.assertEqual(t.to_list(), values)
            self.assertEqual(t.to_array(dtype).data, values)

    def test_bytes_are_little_endian(self):
        t = tensor("t", [2], [1, 256], dtype="i32")
        self.assertEqual(t.raw.data.value, struct.pack("<2i", 1, 256))

    def test_wrong_type_is_a_config_error_naming_both_types(self):
        t = tensor("label", [1], [3], dtype="i64")
        with self.assertRaises(BadConfig) as e:
            t.to_array("f32")
        self.assertEqual(str(e.exception), "bad config: model output 'label' is int64, the hook expects float32")
        self.assertEqual(t.to_f32().data, [3.0])

    def test_to_f32_rounds_wide_types(self):
        t = tensor("x", [1], [0.1], dtype="f64")
        self.assertEqual(t.to_f32().data, [ops.f32(0.1)])

    def test_truncated_bytes_are_reported(self):
        t = raw_tensor("x", T.ElementType.F32, [2], b"\0" * 7)
        with self.assertRaises(BadConfig) as e:
            t_ = Outputs([t]).only()
            t_.to_f32()
        self.assertIn("7 bytes for shape [2]", str(e.exception))

    def test_absurd_shapes_do_not_crash(self):
        t = raw_tensor("x", T.ElementType.F32, [2**64 - 1, 2**64 - 1], b"")
        with self.assertRaises(BadConfig):
            Outputs([t]).only().to_f32()

    def test_shape_mismatch_on_build_is_an_error(self):
        with self.assertRaises(Failed):
            tensor("x", [2, 2], [1.0])

    def test_array_indexing_and_rows(self):
        a = tensor("a", [2, 2, 3], list(range(12)), dtype="i64").to_array()
        self.assertEqual(a.get((1, 0, 2)), 8)
        self.assertIsNone(a.get((2, 0, 0)))
        self.assertEqual(len(list(a.rows())), 4)
        self.assertEqual(a.outer(1), [6, 7, 8, 9, 10, 11])
        self.assertEqual(a.first_item(), list(range(6)))

    def test_outputs_lookup(self):
        out = Outputs([tensor("a", [1], [1.0]).raw, string_tensor("b", [1], ["x"]).raw])
        self.assertEqual(out.first_of(["z", "b"]).name, "b")
        self.assertEqual(out.names(), ["a", "b"])
        with self.assertRaises(BadConfig):
            out.only()
        with self.assertRaises(BadConfig) as e:
            out.get("logits")
        self.assertEqual(e.exception.message, "the model has no output 'logits' (outputs: a, b)")
        with self.assertRaises(BadConfig):
            out.get("b").to_f32()
        self.assertEqual(out.get("b").strings(), ["x"])


class Ops(unittest.TestCase):
    def test_as_probabilities_keeps_distributions_and_softmaxes_logits(self):
        self.assertEqual(ops.as_probabilities([0.25, 0.75]), [0.25, 0.75])
        self.assertAlmostEqual(ops.as_probabilities([2.0, 0.0])[0], 0.8808, places=4)
        # Within the 1e-3 tolerance: unchanged.
        self.assertEqual(ops.as_probabilities([0.5, 0.5009]), [0.5, ops.f32(0.5009)])
        # Outside: softmax.
        self.assertNotEqual(ops.as_probabilities([0.5, 0.502]), [0.5, ops.f32(0.502)])

    def test_softmax_edge_cases(self):
        self.assertEqual(ops.softmax([]), [])
        self.assertEqual(ops.softmax([float("-inf")] * 2), [0.5, 0.5])
        p = ops.softmax([0.0, ops.f32(0.6931471805599453)])
        self.assertAlmostEqual(p[0], 1 / 3, places=6)

    def test_argmax_and_top_k(self):
        nan = float("nan")
        self.assertEqual(ops.argmax([0.1, 0.7, 0.2, 0.7]), (1, 0.7))
        self.assertEqual(ops.argmax([nan, 0.2, 0.1]), (1, 0.2))
        self.assertIsNone(ops.argmax([]))
        self.assertIsNone(ops.argmax([nan]))
        self.assertEqual(ops.top_k([0.3, 0.9, 0.5], 10), [(1, 0.9), (2, 0.5), (0, 0.3)])
        self.assertEqual(ops.top_k([0.5, 0.5, nan], 2), [(0, 0.5), (1, 0.5)])

    def test_widen_prints_the_f32_shortest_form(self):
        self.assertEqual(ops.widen(0.8), 0.8)
        self.assertEqual(jsonenc.dumps(ops.widen(ops.f32(0.9230641))), "0.9230641")
        # A tie: Rust rounds up where Python's formatting rounds to even.
        self.assertEqual(jsonenc.dumps(ops.widen(19781.0625)), "19781.063")
        self.assertEqual(ops.sigmoid(0.0), 0.5)


class Json(unittest.TestCase):
    def test_serde_json_number_format(self):
        cases = {0.0: "0.0", 1.0: "1.0", 0.1: "0.1", 1e-7: "1e-7", 1.5e-5: "0.000015", 1e16: "1e+16",
                 123456789012345.0: "123456789012345.0", -2.5e-300: "-2.5e-300", float("nan"): "null"}  # fmt: skip
        for value, text in cases.items():
            self.assertEqual(jsonenc.dumps(value), text)

    def test_keys_sorted_strings_unescaped(self):
        self.assertEqual(jsonenc.dumps({"b": [1, True, None], "a": "é\n\x01"}), '{"a":"é\\n\\u0001","b":[1,true,null]}')


class LabelConfigs(unittest.TestCase):
    def test_bindings(self):
        c = LabelConfig.parse(ORIENTATION)
        b = c.choices_for_image()
        self.assertEqual((b.from_name, b.to_name, b.object.field), ("orientation", "image", "image"))
        self.assertEqual(b.labels(), ["0", "90", "180", "270"])

    def test_text_binding_and_label_resolution(self):
        c = LabelConfig.parse(
            '<View><Text name="t" value="$text" valueType="url"/><Choices name="s" toname="t">'
            '<Choice value="Positive" alias="pos"/><Choice value="Negative"/></Choices></View>'
        )
        b = c.choices_for_text()
        self.assertEqual(b.to_name, "t")
        self.assertEqual(b.resolve_label("positive"), "Positive")
        self.assertEqual(b.resolve_label("pos"), "Positive")
        self.assertIsNone(b.resolve_label("neutral"))
        self.assertTrue(c.object("t").value_is_url())

    def test_lookup_errors_list_the_controls(self):
        c = LabelConfig.parse('<View><Text name="t" value="$text"/><Labels name="l" toName="t"><Label value="A"/></Labels></View>')
        with self.assertRaises(BadConfig) as e:
            c.choices_for_image()
        self.assertEqual(
            e.exception.message, "the labeling config has no <Choices> pointing at an <Image> (it has: l (<Labels> → t))"
        )
        with self.assertRaises(BadConfig) as e:
            LabelConfig.parse("<View/>").choices_for_text()
        self.assertTrue(e.exception.message.endswith("a text object (it has no control tags)"))

    def test_parse_errors(self):
        with self.assertRaises(BadConfig) as e:
            LabelConfig.parse("<View")
        self.assertTrue(e.exception.message.startswith("labeling config is not valid XML"))
        with self.assertRaises(BadConfig) as e:
            LabelConfig.parse('<View>\n<Image value="$i"/></View>')
        self.assertEqual(e.exception.message, "<Image> at line 2 has no name attribute")
        with self.assertRaises(BadConfig) as e:
            LabelConfig.parse('<View><Image name="x" value="$i"/><Choices name="x" toName="x"/></View>')
        self.assertEqual(e.exception.message, "the name 'x' is used by more than one tag (<Image> and <Choices>)")

    def test_unknown_tags_and_taxonomy(self):
        c = LabelConfig.parse(
            '<View><Foo name="f" value="$foo"/><Ranker name="r" toName="f"/>'
            '<Taxonomy name="tx" toName="f"><Choice value="A"><Choice value="B"/></Choice></Taxonomy></View>'
        )
        self.assertEqual([(o.name, o.kind, o.field) for o in c.objects], [("f", "Foo", "foo")])
        self.assertEqual([(x.name, x.kind) for x in c.controls], [("r", "Ranker"), ("tx", "Taxonomy")])
        self.assertEqual([(l.value, l.path) for l in c.control("tx").labels], [("A", []), ("B", ["A"])])


class Contexts(unittest.TestCase):
    def test_class_names_come_from_the_first_key_present(self):
        c = Context(wit_context(metadata=[("character", "text\ntitle\n")]))
        self.assertEqual(c.class_names_in(["names", "character"]), ["text", "title"])
        self.assertEqual(c.class_names(), ["text", "title"])
        with self.assertRaises(BadConfig) as e:
            c.class_names_in(["labels"])
        self.assertEqual(
            str(e.exception),
            "bad config: the model has no class names in its metadata (looked for labels; it has: character)",
        )
        with self.assertRaises(BadConfig) as e:
            Context(wit_context(metadata=[("names", "[]")])).class_names()
        self.assertEqual(e.exception.message, "model metadata 'names' lists no class names")

    def test_python_dicts_and_lists_parse(self):
        self.assertEqual(parse_class_names("{0: 'a, b', 1: 'c'}"), ["a, b", "c"])
        self.assertEqual(parse_class_names("['x', 'y']"), ["x", "y"])
        self.assertEqual(parse_class_names("negative\r\npositive"), ["negative", "positive"])
        self.assertEqual(parse_class_names("{0: 'person', 1: \"bicycle\", 2: 'it''s'}")[:2], ["person", "bicycle"])
        self.assertEqual(parse_class_names("['a\\'b']"), ["a'b"])
        self.assertEqual(parse_class_names('["x", 1]'), ["x"])

    def test_params_are_read_typed_with_defaults(self):
        c = Context(wit_context()).with_params({"threshold": 1, "names": ["cat", "dog"], "mode": "fast"})
        self.assertEqual(c.param("threshold", 0.5), 1.0)
        self.assertIsInstance(c.param("threshold", 0.5), float)
        self.assertEqual(c.param("missing", 0.5), 0.5)
        self.assertEqual(c.param("names", kind=list), ["cat", "dog"])
        self.assertIsNone(c.param("absent", kind=int))
        with self.assertRaises(BadConfig) as e:
            c.param("mode", 1)
        self.assertEqual(e.exception.message, 'params.mode = "fast" cannot be used here: expected int, got a string')
        with self.assertRaises(BadConfig):
            Context(wit_context()).with_params({"flag": True}).param("flag", 0)

    def test_params_outside_a_component_are_empty_and_must_be_an_object(self):
        self.assertEqual(Context(wit_context()).params, {})
        with self.assertRaises(BadConfig) as e:
            Context(wit_context()).with_params("[1]").param("k", 1)
        self.assertIn("not a JSON object", e.exception.message)

    def test_broken_label_config_is_a_config_error_every_time(self):
        c = Context(wit_context(label_config="<View"))
        for _ in range(2):
            with self.assertRaises(BadConfig):
                c.label_config()

    def test_transform_comes_from_carry(self):
        t = Transform.identity(100, 50).then_resize(10, 10)
        self.assertEqual(Context(wit_context(carry=t.to_json())).image_transform(), t)
        with self.assertRaises(BadConfig):
            Context(wit_context(carry="junk")).image_transform()

    def test_transform_json_is_the_rust_sdks(self):
        t = Transform.identity(640, 480).then_resize(341, 256)
        self.assertEqual(
            t.to_json(),
            '{"original_width":640,"original_height":480,"target_width":341,"target_height":256,'
            '"scale_x":0.5328125,"scale_y":0.53333336,"pad_x":0.0,"pad_y":0.0}',
        )

    def test_resize_then_crop_maps_back(self):
        t = Transform.identity(640, 480).then_resize(341, 256).then_crop(58, 16, 224, 224)
        x, y = t.to_original(0.0, 0.0)
        self.assertAlmostEqual(x, 58 * 640 / 341, places=3)
        self.assertAlmostEqual(y, 16 * 480 / 256, places=3)


class Results(unittest.TestCase):
    def test_rectangle_in_percent(self):
        r = Region.rectangle_labels(("label", "image"), BBox.from_xywh(64, 48, 320, 240), (640, 480), ["Dog"])
        j = Prediction([r.with_score(0.9)]).with_score(0.9).to_json(RegionIds(7), "v1")
        self.assertEqual(
            jsonenc.dumps(j),
            '{"model_version":"v1","result":[{"from_name":"label","id":"t7-r1","image_rotation":0,'
            '"original_height":480,"original_width":640,"score":0.9,"to_name":"image","type":"rectanglelabels",'
            '"value":{"height":50.0,"rectanglelabels":["Dog"],"rotation":0,"width":50.0,"x":10.0,"y":10.0}}],'
            '"score":0.9}',
        )
        clipped = BBox.from_xyxy(-10, 50, 250, 120).to_percent((200, 100))
        self.assertEqual(clipped, (0.0, 50.0, 100.0, 50.0))

    def test_other_shapes(self):
        ids = RegionIds(None)
        p = Region.polygon_labels(("label", "image"), [(0, 0), (200, 0), (100, 50)], (200, 100), ["Text"]).to_json(ids)
        self.assertEqual(p["value"]["points"], [[0.0, 0.0], [100.0, 0.0], [50.0, 50.0]])
        self.assertEqual((p["original_width"], p["original_height"], p["id"]), (200, 100, "r1"))
        kp = Region.keypoint_labels(("kp", "img"), (50.0, 25.0), 0.5, (100, 100), ["Nose"])
        self.assertEqual((kp.value["x"], kp.value["y"]), (50.0, 25.0))
        span = Region.text_span(("label", "text"), 0, 5, "Paris", ["LOC"])
        self.assertEqual(span.value, {"start": 0, "end": 5, "text": "Paris", "labels": ["LOC"]})
        b = Region.brush_labels(("tag", "image"), [True, False, False, False, False, False], 3, 2, ["Car"]).to_json(ids)
        self.assertEqual((b["value"]["format"], b["original_width"]), ("rle", 3))
        self.assertEqual(rle.decode(bytes(b["value"]["rle"]))[:4], [255] * 4)

    def test_ids_explicit_and_shared(self):
        ids = RegionIds(None)
        a = Region.textarea(("t", "i"), ["x"]).with_id("same").to_json(ids)
        b = Region.textarea(("l", "i"), ["x"]).to_json(ids)
        self.assertEqual((a["id"], b["id"]), ("same", "r1"))

    def test_prediction_defaults_and_nan_scores(self):
        nan = float("nan")
        j = Prediction([Region.choices(("c", "i"), ["a"]).with_score(nan)]).with_score(nan).to_json(RegionIds(None), "backend-v3")
        self.assertEqual(j["model_version"], "backend-v3")
        self.assertNotIn("score", j)
        self.assertNotIn("score", j["result"][0])
        p = Prediction([Region.choices(("c", "i"), ["a"]).with_score(0.2), Region.choices(("c", "i"), ["b"]).with_score(0.4)])
        p = p.with_mean_region_score().with_model_version("mine")
        self.assertAlmostEqual(p.score, 0.3, places=12)
        self.assertEqual(p.to_json(RegionIds(None), "x")["model_version"], "mine")

    def test_top_choice_skips_classes_the_config_lacks(self):
        b = LabelConfig.parse(ORIENTATION.replace('<Choice value="90"/>', "")).choices_for_image()
        r = Region.top_choice(b, ["0", "90", "180", "270"], [0.1, 0.6, 0.25, 0.05])
        self.assertEqual((r.value["choices"], r.score), (["180"], 0.25))
        self.assertIsNone(Region.top_choice(b, ["x"], [1.0]))

    def test_a_top_choice_prediction_is_empty_when_the_config_knows_no_class(self):
        b = LabelConfig.parse(ORIENTATION).choices_for_image()
        p = Prediction.top_choice(b, ["0", "90", "180", "270"], [0.1, 0.6, 0.25, 0.05])
        self.assertEqual((p.result[0].value["choices"], p.score), (["90"], 0.6))
        empty = Prediction.top_choice(b, ["x"], [1.0])
        self.assertEqual((empty.result, empty.score), ([], None))


class Entities(unittest.TestCase):
    """The same cases as the Rust SDK's `entities` tests, with the same answers."""

    @staticmethod
    def window(first_word, words):
        from collections import namedtuple

        W = namedtuple("W", "ids special_tokens_mask word_ids offsets")
        ids, special, word_ids, offsets = [101], [1], [None], [(0, 0)]
        for i, pieces in enumerate(words):
            for span in pieces:
                ids.append(1000)
                special.append(0)
                word_ids.append(first_word + i)
                offsets.append(span)
        return W(ids + [102], special + [1], word_ids + [None], offsets + [(0, 0)])

    @staticmethod
    def logits(tags, n_labels, strength):
        return [strength if l == t else 0.0 for t in tags for l in range(n_labels)]

    def spans(self, found):
        return [(e.label, e.start, e.end) for e in found]

    def test_bio_and_sub_words(self):
        from cls_hooks.entities import entities

        w = self.window(0, [[(0, 3)], [(4, 8), (8, 12)], [(13, 16)], [(17, 24)], [(25, 28), (28, 32)], [(33, 35)], [(36, 42)]])
        found = entities([(w, self.logits([0, 1, 2, 0, 0, 1, 2, 3, 0, 3, 0], 5, 6.0))], ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
        self.assertEqual(self.spans(found), [("PER", 0, 12), ("PER", 17, 32), ("LOC", 36, 42)])

    def test_bilou_io_and_type_changes(self):
        from cls_hooks.entities import entities

        w = self.window(0, [[(0, 2)], [(3, 5)], [(6, 8)], [(9, 11)]])
        bilou = entities([(w, self.logits([0, 1, 3, 4, 4, 0], 5, 6.0))], ["O", "B-X", "I-X", "L-X", "U-X"])
        self.assertEqual(self.spans(bilou), [("X", 0, 5), ("X", 6, 8), ("X", 9, 11)])
        io = entities([(w, self.logits([0, 1, 1, 2, 0, 0], 3, 6.0))], ["O", "PER", "ORG"])
        self.assertEqual(self.spans(io), [("PER", 0, 5), ("ORG", 6, 8)])

    def test_an_entity_across_a_window_border_comes_out_whole_and_once(self):
        from cls_hooks.entities import entities

        a = self.window(0, [[(0, 1)], [(2, 3)], [(4, 5)], [(6, 7)]])
        b = self.window(2, [[(4, 5)], [(6, 7)], [(8, 9)], [(10, 11)]])
        found = entities(
            [(a, self.logits([0, 0, 0, 0, 1, 0], 3, 2.0)), (b, self.logits([0, 0, 1, 2, 0, 0], 3, 6.0))],
            ["O", "B-ORG", "I-ORG"],
        )
        self.assertEqual(self.spans(found), [("ORG", 6, 9)])

    def test_nothing_found_and_bad_shapes(self):
        from cls_hooks.entities import entities

        w = self.window(0, [[(0, 2)]])
        self.assertEqual(entities([(w, self.logits([0, 0, 0], 2, 6.0))], ["O", "B-X"]), [])
        with self.assertRaises(BadConfig) as e:
            entities([(w, [0.0] * 5)], ["O", "B-X"])
        self.assertIn("5 values for 3 tokens and 2 labels", str(e.exception))

    def test_regions_carry_the_original_text_and_the_configs_label(self):
        from cls_hooks.entities import Entity

        config = LabelConfig.parse(
            '<View><Text name="text" value="$text"/><Labels name="ner" toName="text"><Label value="Person"/></Labels></View>'
        )
        binding = config.labels_for_text()
        region = Entity("person", 10, 16, 0.9).to_region(binding, "Zoë 🎉 met Łukasz")
        self.assertEqual((region.value["text"], region.value["labels"]), ("Łukasz", ["Person"]))
        self.assertIsNone(Entity("MISC", 10, 16, 0.9).to_region(binding, "Zoë 🎉 met Łukasz"))


class MultiLabel(unittest.TestCase):
    def test_choices_above_a_threshold_most_probable_first(self):
        config = LabelConfig.parse(
            '<View><Text name="text" value="$text"/><Choices name="topics" toName="text" choice="multiple">'
            '<Choice value="sport"/><Choice value="politics"/><Choice value="science"/></Choices></View>'
        )
        binding = config.choices_for_text()
        region = Region.choices_above(binding, ["sport", "politics", "science"], [0.7, 0.2, 0.9], 0.5)
        self.assertEqual(region.value["choices"], ["science", "sport"])
        self.assertEqual(region.score, ops.widen(ops.f32(0.9)))
        self.assertIsNone(Region.choices_above(binding, ["sport", "politics", "science"], [0.1, 0.2, 0.3], 0.5))


class Rle(unittest.TestCase):
    def test_matches_the_converter_bit_for_bit(self):
        bits = "00000000000000000000000000001100" "00111" "0010" "0011" "0111" "1111" "1" "00" "111" "00000000" "1" "00" "011" "11111111"
        bits += "0" * (8 - len(bits) % 8)
        expected = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
        self.assertEqual(rle.encode([0] * 8 + [255] * 4), expected)

    def test_round_trips(self):
        self.assertEqual(len(rle.encode([1, 2, 3])), 12)
        values = [7, 9, 9] + [3] * 9
        out = rle.encode(values)
        self.assertEqual((len(out), out[12]), (13, 0))
        for n in (2, 8, 9, 16, 17, 256, 257, 65536, 65537, 200000):
            values = [5] * n + [6]
            self.assertEqual(rle.decode(rle.encode(values)), values)
        with self.assertRaises(BadInput):
            rle.decode(b"")


class Export(unittest.TestCase):
    def outputs(self):
        return [tensor("probs", [1, 4], [0.1, 0.6, 0.25, 0.05]).raw]

    def test_predictions_become_rust_sdk_json(self):
        def hook(outputs, ctx):
            target = ctx.choices_for_image()
            probs = ops.as_probabilities(outputs.only().to_f32().first_item())
            return Prediction.top_choice(target, ctx.class_names(), probs)

        ctx = wit_context(ORIENTATION, metadata=[("character", "0\n90\n180\n270")], task_id=1)
        self.assertEqual(
            run_post_hook(hook, self.outputs(), ctx),
            '[{"model_version":"v1","result":[{"from_name":"orientation","id":"t1-r1","score":0.6,'
            '"to_name":"image","type":"choices","value":{"choices":["90"]}}],"score":0.6}]',
        )

    def test_other_return_values(self):
        ctx = Context(wit_context())
        self.assertEqual(post_json(RawJson("not json {"), ctx), "not json {")
        self.assertEqual(post_json({"result": []}, ctx), '{"result":[]}')
        self.assertEqual(post_json(Prediction([]), ctx), '[{"model_version":"v1","result":[]}]')
        with self.assertRaises(Failed):
            post_json(None, ctx)
        with self.assertRaises(Failed):
            post_json([object()], ctx)

    def test_hook_errors_keep_their_kind(self):
        for exc, cls in [(BadInput("no"), T.HookError_BadInput), (BadConfig("no"), T.HookError_BadConfig), (Failed("no"), T.HookError_Failed)]:
            def hook(outputs, ctx, exc=exc):
                raise exc

            with self.assertRaises(Err) as e:
                run_post_hook(hook, [], wit_context())
            self.assertEqual(e.exception.value, cls("no"))

    def test_other_exceptions_fail_with_a_traceback(self):
        def hook(outputs, ctx):
            return 1 / 0

        with self.assertRaises(Err) as e:
            run_post_hook(hook, [], wit_context())
        err = e.exception.value
        self.assertIsInstance(err, T.HookError_Failed)
        self.assertTrue(err.value.startswith("ZeroDivisionError: division by zero\nTraceback"), err.value)
        self.assertIn("in hook", err.value)
        self.assertNotIn("export.py", err.value)

    def test_label_config_errors_are_config_errors(self):
        def hook(outputs, ctx):
            ctx.choices_for_image()

        with self.assertRaises(Err) as e:
            run_post_hook(hook, [], wit_context("<View/>"))
        self.assertIsInstance(e.exception.value, T.HookError_BadConfig)

    def test_pre_hook_outputs(self):
        import wit_world

        t = string_tensor("text", [1, 1], ["hi"])
        self.assertEqual(pre_output([t]), wit_world.PreOutput([t.raw], None))
        self.assertEqual(pre_output(PreOutput([t]).with_carry("c")).carry, "c")
        self.assertEqual(pre_output(([t], "c")).carry, "c")
        dp = T.Datapoint("text", None, "text/plain", b"great movie")

        def hook(datapoints, ctx):
            return [string_tensor("text", [1, 1], [datapoints.text(ctx).text()])]

        out = run_pre_hook(hook, [dp], wit_context('<View><Text name="t" value="$text"/></View>'))
        self.assertEqual(out.inputs[0].data.value, ["great movie"])

        def bad(datapoints, ctx):
            return datapoints.image(ctx)

        with self.assertRaises(Err) as e:
            run_pre_hook(bad, [dp], wit_context())
        self.assertEqual(
            e.exception.value,
            T.HookError_BadInput("the task has no image to run the model on (datapoints: text (text/plain))"),
        )


if __name__ == "__main__":
    unittest.main()
