//! `validate_predictions`: one test per rule, on real Label Studio configs.
// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod configs;

use labelconfig::{LabelConfig, ValidationError, validate_predictions};
use serde_json::{Value, json};

fn check(config: &str, output: Value) -> Result<Vec<Value>, ValidationError> {
    let config = LabelConfig::parse(config).unwrap();
    let mut n = 0;
    validate_predictions(&config, output, &mut || {
        n += 1;
        format!("gen{n}")
    })
}

fn error(config: &str, output: Value) -> String {
    match check(config, output) {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn rect(label: &str, x: f64, y: f64, w: f64, h: f64) -> Value {
    json!({"from_name": "label", "to_name": "image", "type": "rectanglelabels",
           "original_width": 640, "original_height": 480,
           "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]}})
}

#[test]
fn a_single_prediction_becomes_a_list_with_ids_filled_in() {
    let out = check(
        configs::OBJECT_DETECTION,
        json!({"result": [rect("Car", 1.0, 2.0, 3.0, 4.0)], "score": 0.5}),
    )
    .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["result"][0]["id"], "gen1");
    assert_eq!(out[0]["score"], 0.5);
}

#[test]
fn existing_ids_are_kept_and_lists_are_indexed_in_errors() {
    let mut region = rect("Car", 1.0, 2.0, 3.0, 4.0);
    region["id"] = json!("mine");
    let out = check(
        configs::OBJECT_DETECTION,
        json!([{"result": [region]}, {"result": []}]),
    )
    .unwrap();
    assert_eq!(out[0]["result"][0]["id"], "mine");
    assert_eq!(out.len(), 2);

    let msg = error(
        configs::OBJECT_DETECTION,
        json!([{"result": []}, {"result": [rect("Cat", 1.0, 1.0, 1.0, 1.0)]}]),
    );
    assert_eq!(
        msg,
        "[1].result[0].value.rectanglelabels[0]: label 'Cat' is not in RectangleLabels 'label' (expected one of: Airplane, Car)"
    );
}

#[test]
fn non_string_ids_are_rejected() {
    let mut region = rect("Car", 1.0, 2.0, 3.0, 4.0);
    region["id"] = json!(7);
    assert_eq!(
        error(configs::OBJECT_DETECTION, json!({"result": [region]})),
        "result[0].id: expected a string, got a number"
    );
}

#[test]
fn output_must_be_an_object_or_list_with_a_result_list() {
    assert_eq!(
        error(configs::OBJECT_DETECTION, json!("hello")),
        "(top level): expected a prediction object or a list of them, got a string"
    );
    assert_eq!(
        error(configs::OBJECT_DETECTION, json!({"score": 1})),
        "result: expected a list of regions, got nothing"
    );
    assert_eq!(
        error(configs::OBJECT_DETECTION, json!({"result": {}})),
        "result: expected a list of regions, got an object"
    );
    assert_eq!(
        error(configs::OBJECT_DETECTION, json!([3])),
        "[0]: expected a prediction object, got a number"
    );
    assert_eq!(
        error(configs::OBJECT_DETECTION, json!({"result": [1]})),
        "result[0]: expected a region object, got a number"
    );
}

#[test]
fn prediction_score_must_be_numeric_and_model_version_a_string() {
    assert_eq!(
        error(
            configs::OBJECT_DETECTION,
            json!({"result": [], "score": "high"})
        ),
        "score: expected a number, got a string"
    );
    assert!(
        error(
            configs::OBJECT_DETECTION,
            json!({"result": [], "model_version": null})
        )
        .starts_with("model_version: expected a string")
    );
    assert!(
        check(
            configs::OBJECT_DETECTION,
            json!({"result": [], "model_version": "v1", "score": null})
        )
        .is_ok()
    );
}

#[test]
fn from_name_must_be_a_control() {
    let mut region = rect("Car", 1.0, 2.0, 3.0, 4.0);
    region["from_name"] = json!("labels");
    assert_eq!(
        error(configs::OBJECT_DETECTION, json!({"result": [region]})),
        "result[0].from_name: 'labels' is not a control in the labeling config (expected one of: label)"
    );
    region.as_object_mut().unwrap().remove("from_name");
    assert_eq!(
        error(configs::OBJECT_DETECTION, json!({"result": [region]})),
        "result[0].from_name: missing"
    );
}

#[test]
fn to_name_must_be_a_target_of_the_control() {
    let mut region = rect("Car", 1.0, 2.0, 3.0, 4.0);
    region["to_name"] = json!("img");
    assert_eq!(
        error(configs::OBJECT_DETECTION, json!({"result": [region]})),
        "result[0].to_name: 'img' is not a target of RectangleLabels 'label' (expected one of: image)"
    );
}

#[test]
fn type_must_match_the_control_tag() {
    let mut region = rect("Car", 1.0, 2.0, 3.0, 4.0);
    region["type"] = json!("rectangle");
    assert_eq!(
        error(configs::OBJECT_DETECTION, json!({"result": [region]})),
        "result[0].type: 'rectangle' does not match RectangleLabels 'label' (expected 'rectanglelabels')"
    );
}

#[test]
fn value_must_have_the_key_for_its_type() {
    let region = json!({"from_name": "choice", "to_name": "image", "type": "choices", "value": {"labels": ["Weapons"]}});
    assert_eq!(
        error(configs::IMAGE_CLASSIFICATION, json!({"result": [region]})),
        "result[0].value: missing 'choices', which a choices result needs (value has: labels)"
    );
    let region = json!({"from_name": "choice", "to_name": "image", "type": "choices"});
    assert_eq!(
        error(configs::IMAGE_CLASSIFICATION, json!({"result": [region]})),
        "result[0].value: expected an object, got nothing"
    );
}

#[test]
fn choices_must_be_known_and_single_unless_multiple() {
    let region = |c: Value| json!({"from_name": "choice", "to_name": "image", "type": "choices", "value": {"choices": c}});
    assert!(
        check(
            configs::IMAGE_CLASSIFICATION,
            json!({"result": [region(json!(["Weapons"]))]})
        )
        .is_ok()
    );
    assert_eq!(
        error(
            configs::IMAGE_CLASSIFICATION,
            json!({"result": [region(json!(["Cats"]))]})
        ),
        "result[0].value.choices[0]: choice 'Cats' is not in Choices 'choice' (expected one of: Adult content, Weapons, Violence)"
    );
    assert!(
        error(
            configs::IMAGE_CLASSIFICATION,
            json!({"result": [region(json!(["Weapons", "Violence"]))]})
        )
        .starts_with("result[0].value.choices: 2 choices given but Choices 'choice' allows one")
    );
    assert_eq!(
        error(
            configs::IMAGE_CLASSIFICATION,
            json!({"result": [region(json!("Weapons"))]})
        ),
        "result[0].value.choices: expected a list of strings, got a string"
    );

    let multi = json!({"from_name": "tags", "to_name": "photo", "type": "choices", "value": {"choices": ["in", "People"]}});
    assert!(
        check(
            configs::MULTI_LABEL_WITH_ALIASES,
            json!({"result": [multi]})
        )
        .is_ok(),
        "aliases and multiple"
    );
}

#[test]
fn taxonomy_paths_must_follow_the_tree() {
    let region = |p: Value| json!({"from_name": "taxonomy", "to_name": "text", "type": "taxonomy", "value": {"taxonomy": p}});
    assert!(
        check(
            configs::TAXONOMY,
            json!({"result": [region(json!([["Eukarya", "Human"], ["Archaea"]]))]})
        )
        .is_ok()
    );
    assert_eq!(
        error(
            configs::TAXONOMY,
            json!({"result": [region(json!([["Human"]]))]})
        ),
        "result[0].value.taxonomy[0][0]: 'Human' is not a choice of Taxonomy 'taxonomy' at this level (expected one of: Archaea, Bacteria, Eukarya)"
    );
}

#[test]
fn rectangle_coordinates_are_percentages() {
    assert_eq!(
        error(
            configs::OBJECT_DETECTION,
            json!({"result": [rect("Car", 120.0, 2.0, 3.0, 4.0)]})
        ),
        "result[0].value.x: x = 120 is outside 0–100 (Label Studio coordinates are percent of the image size, not pixels)"
    );
    assert!(
        error(
            configs::OBJECT_DETECTION,
            json!({"result": [rect("Car", 90.0, 2.0, 30.0, 4.0)]})
        )
        .starts_with("result[0].value.width: x + width = 120 exceeds 100")
    );
    assert!(
        error(
            configs::OBJECT_DETECTION,
            json!({"result": [rect("Car", 1.0, -2.0, 3.0, 4.0)]})
        )
        .starts_with("result[0].value.y:")
    );
    let mut missing = rect("Car", 1.0, 2.0, 3.0, 4.0);
    missing["value"].as_object_mut().unwrap().remove("height");
    assert_eq!(
        error(configs::OBJECT_DETECTION, json!({"result": [missing]})),
        "result[0].value.height: missing; expected a number in 0–100 (percent of the image size)"
    );
    assert!(
        check(
            configs::OBJECT_DETECTION,
            json!({"result": [rect("Car", 0.0, 0.0, 100.0, 100.0)]})
        )
        .is_ok()
    );
}

#[test]
fn polygon_points_are_percent_pairs_and_at_least_three() {
    let region = |points: Value| {
        json!({"from_name": "label", "to_name": "image", "type": "polygonlabels",
               "value": {"points": points, "polygonlabels": ["Car"]}})
    };
    assert!(
        check(
            configs::POLYGONS,
            json!({"result": [region(json!([[1, 2], [3, 4], [5.5, 6]]))]})
        )
        .is_ok()
    );
    assert_eq!(
        error(
            configs::POLYGONS,
            json!({"result": [region(json!([[1, 2], [3, 4]]))]})
        ),
        "result[0].value.points: a polygon needs at least 3 points, got 2"
    );
    assert!(
        error(
            configs::POLYGONS,
            json!({"result": [region(json!([[1, 2], [3, 400], [5, 6]]))]})
        )
        .starts_with("result[0].value.points[1][1]: y = 400 is outside 0–100")
    );
    assert_eq!(
        error(
            configs::POLYGONS,
            json!({"result": [region(json!([[1, 2], [3], [5, 6]]))]})
        ),
        "result[0].value.points[1]: expected [x, y], got [3]"
    );
}

#[test]
fn keypoints_need_x_and_y_in_range() {
    let region = |x: f64| {
        json!({"from_name": "kp-1", "to_name": "img-1", "type": "keypointlabels",
               "value": {"x": x, "y": 5, "width": 0.5, "keypointlabels": ["Nose"]}})
    };
    assert!(check(configs::KEYPOINTS, json!({"result": [region(50.0)]})).is_ok());
    assert!(
        error(configs::KEYPOINTS, json!({"result": [region(101.0)]}))
            .starts_with("result[0].value.x: x = 101")
    );
}

#[test]
fn brush_needs_rle_bytes_and_the_original_size() {
    let region = json!({"from_name": "tag", "to_name": "image", "type": "brushlabels",
                        "original_width": 2, "original_height": 1,
                        "value": {"format": "rle", "rle": [0, 0, 0, 8, 7], "brushlabels": ["Car"]}});
    assert!(check(configs::BRUSH, json!({"result": [region.clone()]})).is_ok());

    let mut no_size = region.clone();
    no_size.as_object_mut().unwrap().remove("original_width");
    assert_eq!(
        error(configs::BRUSH, json!({"result": [no_size]})),
        "result[0].original_width: missing; a brushlabels result needs the original image size to decode its mask"
    );
    let mut bad_byte = region.clone();
    bad_byte["value"]["rle"] = json!([0, 300]);
    assert_eq!(
        error(configs::BRUSH, json!({"result": [bad_byte]})),
        "result[0].value.rle[1]: expected a byte (0–255), got 300"
    );
    let mut bad_format = region;
    bad_format["value"]["format"] = json!("png");
    assert_eq!(
        error(configs::BRUSH, json!({"result": [bad_format]})),
        "result[0].value.format: expected \"rle\", got \"png\""
    );
}

#[test]
fn original_size_must_be_positive_integers() {
    let mut region = rect("Car", 1.0, 2.0, 3.0, 4.0);
    region["original_height"] = json!(0);
    assert_eq!(
        error(
            configs::OBJECT_DETECTION,
            json!({"result": [region.clone()]})
        ),
        "result[0].original_height: expected a positive integer (pixels of the original image), got 0"
    );
    region["original_height"] = json!(480.5);
    assert!(
        error(configs::OBJECT_DETECTION, json!({"result": [region]}))
            .starts_with("result[0].original_height:")
    );
}

#[test]
fn region_score_must_be_numeric() {
    let mut region = rect("Car", 1.0, 2.0, 3.0, 4.0);
    region["score"] = json!("0.9");
    assert_eq!(
        error(configs::OBJECT_DETECTION, json!({"result": [region]})),
        "result[0].score: expected a number, got a string"
    );
}

#[test]
fn text_spans_need_ordered_offsets_and_known_labels() {
    let region = |start: i64, end: i64, label: &str| {
        json!({"from_name": "label", "to_name": "text", "type": "labels",
               "value": {"start": start, "end": end, "text": "Paris", "labels": [label]}})
    };
    assert!(check(configs::NER, json!({"result": [region(3, 8, "LOC")]})).is_ok());
    assert_eq!(
        error(configs::NER, json!({"result": [region(8, 3, "LOC")]})),
        "result[0].value.end: expected 0 ≤ start ≤ end, got start 8, end 3"
    );
    assert!(
        error(configs::NER, json!({"result": [region(3, 8, "CITY")]}))
            .starts_with("result[0].value.labels[0]: label 'CITY'")
    );
}

#[test]
fn textarea_results_carry_a_list_of_strings() {
    let region = |text: Value| json!({"from_name": "transcription", "to_name": "audio", "type": "textarea", "value": {"text": text}});
    assert!(
        check(
            configs::TRANSCRIPTION,
            json!({"result": [region(json!(["hello world"]))]})
        )
        .is_ok()
    );
    assert_eq!(
        error(
            configs::TRANSCRIPTION,
            json!({"result": [region(json!([1]))]})
        ),
        "result[0].value.text[0]: expected a string, got a number"
    );
}

#[test]
fn ocr_regions_share_an_id_across_controls() {
    let bbox = json!({"id": "r1", "from_name": "bbox", "to_name": "image", "type": "rectangle",
                      "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rotation": 0}});
    let text = json!({"id": "r1", "from_name": "transcription", "to_name": "image", "type": "textarea",
                      "value": {"x": 1, "y": 1, "width": 5, "height": 5, "text": ["Hi"]}});
    assert!(check(configs::OCR, json!({"result": [bbox, text]})).is_ok());
}

#[test]
fn rating_must_be_a_non_negative_number() {
    let region = |r: Value| json!({"from_name": "quality", "to_name": "photo", "type": "rating", "value": {"rating": r}});
    assert!(
        check(
            configs::MULTI_LABEL_WITH_ALIASES,
            json!({"result": [region(json!(4))]})
        )
        .is_ok()
    );
    assert_eq!(
        error(
            configs::MULTI_LABEL_WITH_ALIASES,
            json!({"result": [region(json!("4"))]})
        ),
        "result[0].value.rating: expected a number ≥ 0, got \"4\""
    );
}

#[test]
fn relations_need_both_ends() {
    let relation = json!({"type": "relation", "from_id": "a", "to_id": "b", "direction": "right"});
    assert!(check(configs::NER, json!({"result": [relation]})).is_ok());
    assert_eq!(
        error(
            configs::NER,
            json!({"result": [{"type": "relation", "from_id": "a"}]})
        ),
        "result[0].to_id: missing"
    );
}

#[test]
fn rotated_rectangles_may_extend_past_their_frame() {
    let mut region = rect("Car", 90.0, 2.0, 20.0, 4.0);
    region["value"]["rotation"] = json!(30);
    assert!(check(configs::OBJECT_DETECTION, json!({"result": [region]})).is_ok());
}
