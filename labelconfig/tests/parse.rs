//! Parsing real Label Studio configs and the lookups built on them.
// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod configs;

use labelconfig::{ChoiceMode, ControlKind, LabelConfig, LookupError, ObjectKind, ParseError};

fn parse(xml: &str) -> LabelConfig {
    match LabelConfig::parse(xml) {
        Ok(config) => config,
        Err(e) => panic!("config should parse: {e}"),
    }
}

#[test]
fn image_classification_binds_choices_to_the_image_field() {
    let config = parse(configs::IMAGE_CLASSIFICATION);
    let b = config.choices_for_image().unwrap();
    assert_eq!((b.from_name(), b.to_name()), ("choice", "image"));
    assert_eq!(b.object.field.as_deref(), Some("image"));
    assert_eq!(
        b.labels().collect::<Vec<_>>(),
        ["Adult content", "Weapons", "Violence"]
    );
    assert_eq!(b.control.choice, ChoiceMode::Single);
    assert_eq!(b.control.kind.result_type(), "choices");
}

#[test]
fn every_image_control_family_is_recognised() {
    for (xml, kind, labels) in [
        (
            configs::OBJECT_DETECTION,
            ControlKind::RectangleLabels,
            vec!["Airplane", "Car"],
        ),
        (
            configs::POLYGONS,
            ControlKind::PolygonLabels,
            vec!["Airplane", "Car"],
        ),
        (
            configs::BRUSH,
            ControlKind::BrushLabels,
            vec!["Airplane", "Car"],
        ),
        (
            configs::KEYPOINTS,
            ControlKind::KeyPointLabels,
            vec!["Face", "Nose"],
        ),
    ] {
        let config = parse(xml);
        let b = config.binding(&kind, &ObjectKind::Image).unwrap();
        assert_eq!(b.labels().collect::<Vec<_>>(), labels, "{kind}");
        assert_eq!(
            b.control.kind.result_type(),
            kind.tag().to_ascii_lowercase()
        );
    }
}

#[test]
fn the_header_is_not_an_object_and_the_image_is_found_after_its_control() {
    let config = parse(configs::KEYPOINTS);
    assert_eq!(config.objects().len(), 1);
    assert_eq!(config.objects()[0].field.as_deref(), Some("img"));
    let config = parse(configs::POLYGONS);
    assert_eq!(config.objects().len(), 1);
}

#[test]
fn ocr_config_has_labels_tools_and_a_textarea_on_one_image() {
    let config = parse(configs::OCR);
    let kinds: Vec<_> = config.controls().iter().map(|c| c.kind.clone()).collect();
    assert_eq!(
        kinds,
        [
            ControlKind::Labels,
            ControlKind::Rectangle,
            ControlKind::Polygon,
            ControlKind::TextArea
        ]
    );
    assert_eq!(
        config.textarea_for(&ObjectKind::Image).unwrap().from_name(),
        "transcription"
    );
    assert_eq!(config.controls_of(&ControlKind::Rectangle).count(), 1);
    assert!(config.controls().iter().all(|c| c.targets("image")));
}

#[test]
fn text_classification_finds_text_objects_of_any_textual_kind() {
    let config = parse(configs::SENTIMENT);
    let b = config.choices_for_text().unwrap();
    assert_eq!((b.from_name(), b.to_name()), ("sentiment", "text"));
    assert!(config.choices_for_image().is_err());

    let config = parse(configs::TEXT_FROM_URL);
    let b = config.choices_for_text().unwrap();
    assert_eq!(
        b.object.value_type.as_deref(),
        Some("url"),
        "valueType is kept"
    );
    assert!(b.object.value_is_url());
    assert_eq!(b.to_name(), "review", "lower-case toname is accepted");
}

#[test]
fn ner_labels_bind_to_text() {
    let config = parse(configs::NER);
    let b = config.labels_for_text().unwrap();
    assert_eq!(
        b.labels().collect::<Vec<_>>(),
        ["PER", "ORG", "LOC", "MISC"]
    );
    assert_eq!(b.object.kind, ObjectKind::Text);
    assert!(!b.object.value_is_url());
}

#[test]
fn taxonomy_options_keep_their_paths() {
    let config = parse(configs::TAXONOMY);
    let control = config.control("taxonomy").unwrap();
    let human = control.labels.iter().find(|l| l.value == "Human").unwrap();
    assert_eq!(human.path, ["Eukarya"]);
    assert!(
        control
            .labels
            .iter()
            .find(|l| l.value == "Eukarya")
            .unwrap()
            .path
            .is_empty()
    );
    assert_eq!(control.labels.len(), 6);
}

#[test]
fn comma_separated_to_name_lists_every_target() {
    let config = parse(configs::PAIRWISE);
    let pw = config.control("pw").unwrap();
    assert_eq!(pw.kind, ControlKind::Other("Pairwise".into()));
    assert_eq!(pw.to_names, ["text1", "text2"]);
    assert_eq!(config.targets_of(pw).count(), 2);
    assert_eq!(pw.kind.result_type(), "pairwise");
}

#[test]
fn choices_nested_in_views_with_aliases_are_found() {
    let config = parse(configs::MULTI_LABEL_WITH_ALIASES);
    let tags = config.control("tags").unwrap();
    assert_eq!(
        tags.label_values().collect::<Vec<_>>(),
        ["Indoor", "Outdoor", "People"]
    );
    assert_eq!(tags.labels[0].alias.as_deref(), Some("in"));
    assert_eq!(tags.choice, ChoiceMode::Multiple);
    assert_eq!(config.control("quality").unwrap().kind, ControlKind::Rating);
}

#[test]
fn model_class_names_resolve_by_value_alias_or_case() {
    let config = parse(configs::MULTI_LABEL_WITH_ALIASES);
    let tags = config.control("tags").unwrap();
    assert_eq!(tags.resolve_label("Indoor"), Some("Indoor"));
    assert_eq!(tags.resolve_label("out"), Some("Outdoor"));
    assert_eq!(tags.resolve_label("people"), Some("People"));
    assert_eq!(tags.resolve_label("cat"), None);
}

#[test]
fn audio_transcription_binds_textarea_to_audio() {
    let config = parse(configs::TRANSCRIPTION);
    let b = config.textarea_for(&ObjectKind::Audio).unwrap();
    assert_eq!((b.from_name(), b.to_name()), ("transcription", "audio"));
    assert!(b.object.value_is_url());
}

#[test]
fn missing_binding_error_lists_what_the_config_has() {
    let config = parse(configs::SENTIMENT);
    let err = config.rectangle_labels_for_image().unwrap_err();
    assert_eq!(
        err.to_string(),
        "the labeling config has no <RectangleLabels> pointing at an <Image> (it has: sentiment (<Choices> → text))"
    );
    assert_eq!(
        config.binding_named("nope").unwrap_err(),
        LookupError::NoControl("nope".into())
    );
    assert_eq!(config.binding_named("sentiment").unwrap().to_name(), "text");
}

#[test]
fn unknown_tags_with_to_name_become_controls_and_with_fields_become_objects() {
    let config = parse(
        r#"<View><Chatbox name="chat" value="$messages"/><Vector name="v" toName="chat"/><Foo bar="1"/></View>"#,
    );
    assert_eq!(
        config.object("chat").unwrap().kind,
        ObjectKind::Other("Chatbox".into())
    );
    assert_eq!(
        config.control("v").unwrap().kind,
        ControlKind::Other("Vector".into())
    );
    assert_eq!(config.controls().len(), 1);
}

#[test]
fn dynamic_choices_accept_any_label() {
    let config = parse(
        r#"<View><Text name="t" value="$t"/><Choices name="c" toName="t" value="$options"/></View>"#,
    );
    let c = config.control("c").unwrap();
    assert!(c.dynamic_labels);
    assert!(c.accepts_label("anything"));
}

#[test]
fn image_galleries_take_their_field_from_value_list() {
    let config = parse(r#"<View><Image name="img" valueList="$images"/></View>"#);
    assert_eq!(
        config.object("img").unwrap().field.as_deref(),
        Some("images")
    );
}

#[test]
fn malformed_xml_is_a_parse_error() {
    assert!(matches!(
        LabelConfig::parse("<View><Image name='x'"),
        Err(ParseError::Xml(_))
    ));
}

#[test]
fn a_control_without_a_name_is_reported_with_its_line() {
    let err = LabelConfig::parse(
        "<View>\n<Image name=\"i\" value=\"$i\"/>\n<Choices toName=\"i\"/></View>",
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "<Choices> at line 3 has no name attribute");
}

#[test]
fn duplicate_names_are_rejected() {
    let err = LabelConfig::parse(
        r#"<View><Image name="x" value="$i"/><Choices name="x" toName="x"/></View>"#,
    )
    .unwrap_err();
    assert!(matches!(err, ParseError::DuplicateName { .. }), "{err}");
}
