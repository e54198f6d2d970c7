use super::*;

fn f32s(name: &str, shape: &[u64], values: &[f32]) -> Tensor {
    Tensor {
        name: name.to_string(),
        element_type: ElementType::F32,
        shape: shape.to_vec(),
        data: TensorData::Bytes(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
    }
}

fn read(t: &Tensor) -> Vec<f32> {
    Values::read(t).unwrap().data
}

#[test]
fn softmax_runs_along_the_axis_asked_for() {
    // [2, 3]: rows (1, 2, 3) and (1, 1, 1).
    let t = f32s("logits", &[2, 3], &[1.0, 2.0, 3.0, 1.0, 1.0, 1.0]);
    let last = read(&map_rows(t.clone(), -1, hook_sdk::ops::softmax).unwrap());
    let row0 = hook_sdk::ops::softmax(&[1.0, 2.0, 3.0]);
    assert_eq!(&last[..3], row0.as_slice());
    assert_eq!(&last[3..], &[1.0 / 3.0; 3]);

    let first = read(&map_rows(t, 0, hook_sdk::ops::softmax).unwrap());
    // Column 2 is (3, 1): its softmax lands at indices 2 and 5.
    let column = hook_sdk::ops::softmax(&[3.0, 1.0]);
    assert_eq!((first[2], first[5]), (column[0], column[1]));
    assert_eq!(first[0], 0.5);
}

#[test]
fn an_axis_outside_the_tensor_is_named() {
    let t = f32s("logits", &[2, 3], &[0.0; 6]);
    let err = map_rows(t.clone(), 2, hook_sdk::ops::softmax).unwrap_err();
    assert_eq!(err, "axis 2 is outside a tensor of rank 2");
    assert!(map_rows(t, -3, hook_sdk::ops::softmax).is_err());
}

#[test]
fn integer_and_string_tensors_are_read_or_refused_by_name() {
    let ints = Tensor {
        name: "ids".into(),
        element_type: ElementType::I64,
        shape: vec![2],
        data: TensorData::Bytes([7i64, -2].iter().flat_map(|v| v.to_le_bytes()).collect()),
    };
    assert_eq!(read(&ints), vec![7.0, -2.0]);
    let strings = Tensor {
        name: "words".into(),
        element_type: ElementType::String,
        shape: vec![1],
        data: TensorData::Strings(vec!["a".into()]),
    };
    let err = Values::read(&strings).err().unwrap();
    assert!(err.contains("`words` is a string tensor"), "{err}");
    let short = f32s("x", &[3], &[1.0, 2.0]);
    assert_eq!(
        Values::read(&short).err().unwrap(),
        "`x` has shape [3] but 2 elements"
    );
}

#[test]
fn top_k_gives_one_list_per_row_in_row_major_order() {
    // [2, 2, 3] along axis 1: four rows of two.
    let data: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let rows = top_k(&f32s("x", &[2, 2, 3], &data), 1, 1).unwrap();
    let picked: Vec<(u32, f32)> = rows.iter().map(|r| (r[0].index, r[0].value)).collect();
    assert_eq!(
        picked,
        [(1, 3.0), (1, 4.0), (1, 5.0), (1, 9.0), (1, 10.0), (1, 11.0)]
    );
}

#[test]
fn nms_keeps_the_sdk_s_boxes_with_their_rows_and_classes() {
    let boxes = f32s(
        "boxes",
        &[1, 3, 4],
        &[0., 0., 10., 10., 1., 1., 11., 11., 50., 50., 60., 60.],
    );
    let options = NmsOptions {
        format: BoxFormat::Xyxy,
        iou_threshold: 0.5,
        score_threshold: 0.1,
        max_candidates: 0,
        max_keep: 0,
    };
    let one_class = nms(&boxes, &f32s("scores", &[3], &[0.8, 0.9, 0.3]), options).unwrap();
    let rows: Vec<u32> = one_class.iter().map(|d| d.index).collect();
    assert_eq!(rows, [1, 2]);
    assert_eq!((one_class[0].x1, one_class[0].y2), (1.0, 11.0));

    // Two classes: box 2 is class 1's only candidate.
    let scores = f32s("scores", &[3, 2], &[0.8, 0.0, 0.9, 0.0, 0.05, 0.7]);
    let kept: Vec<(u32, u32)> = nms(&boxes, &scores, options)
        .unwrap()
        .iter()
        .map(|d| (d.index, d.class))
        .collect();
    assert_eq!(kept, [(1, 0), (2, 1)]);

    let centres = f32s("boxes", &[1, 4], &[5., 5., 10., 10.]);
    let cxcywh = NmsOptions {
        format: BoxFormat::Cxcywh,
        ..options
    };
    let d = nms(&centres, &f32s("s", &[1], &[0.9]), cxcywh).unwrap();
    assert_eq!((d[0].x1, d[0].y1, d[0].x2, d[0].y2), (0.0, 0.0, 10.0, 10.0));

    let err = nms(&boxes, &f32s("scores", &[2], &[0.1, 0.2]), options).unwrap_err();
    assert!(err.contains("scores must be [3] or [3, classes]"), "{err}");
    assert_eq!(candidate_cap(0), MAX_NMS_CANDIDATES);
    assert_eq!(candidate_cap(50_000), MAX_NMS_CANDIDATES);
}

#[test]
fn ctc_decodes_every_line_of_a_batch() {
    let alphabet = CtcAlphabet::PaddleDictionary("h\ni".into());
    let one_hot = |picks: &[usize]| -> Vec<f32> {
        picks
            .iter()
            .flat_map(|&c| (0..4).map(move |k| if k == c { 0.9 } else { 0.0 }))
            .collect()
    };
    let mut data = one_hot(&[1, 1, 0, 2]);
    data.extend(one_hot(&[2, 3, 0, 0]));
    let lines = ctc_greedy_decode(&f32s("probs", &[2, 4, 4], &data), alphabet.clone(), 0).unwrap();
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts, ["hi", "i "]);
    assert_eq!(lines[0].score, 0.9);

    let err = ctc_greedy_decode(&f32s("probs", &[4, 4], &data[..16]), alphabet, 4).unwrap_err();
    assert_eq!(err, "blank 4 is not one of the 4 classes");
    let three = CtcAlphabet::Classes(vec![String::new(), "h".into(), "i".into()]);
    let err = ctc_greedy_decode(&f32s("probs", &[4, 4], &data[..16]), three, 0).unwrap_err();
    assert!(err.contains("4 classes but the alphabet 3"), "{err}");
}

#[test]
fn regions_trace_outlines_and_drop_small_ones() {
    // 6×4: a 3×2 block and a single pixel.
    let mut map = vec![0.0f32; 24];
    for y in 1..3 {
        for x in 2..5 {
            map[y * 6 + x] = 0.8;
        }
    }
    map[0] = 0.6;
    let options = RegionOptions {
        threshold: 0.5,
        dilate_width: 0,
        dilate_height: 0,
        min_pixels: 2,
        epsilon: 0.0,
    };
    let found = regions(&f32s("map", &[1, 1, 4, 6], &map), options).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].pixels, 6);
    assert_eq!(found[0].bbox, (2, 1, 3, 2));
    assert_eq!(
        found[0].outline,
        [(2.0, 1.0), (5.0, 1.0), (5.0, 3.0), (2.0, 3.0)]
    );
    assert!((found[0].mean - 0.8).abs() < 1e-6);

    let err = regions(&f32s("map", &[2, 3, 4], &[0.0; 24]), options).unwrap_err();
    assert!(err.contains("must be [height, width]"), "{err}");
}

#[test]
fn brush_rle_is_the_sdk_s_encoding_of_the_thresholded_mask() {
    let values = [0.0, 0.9, 0.2, 0.7];
    let rle = brush_rle(&f32s("mask", &[2, 2], &values), 0.5).unwrap();
    let mask = Mask::from_threshold(&values, 2, 2, 0.5).unwrap();
    assert_eq!(rle, hook_sdk::rle::encode_mask(&mask));
    let rgba = hook_sdk::rle::decode(&rle).unwrap();
    assert_eq!(&rgba[4..8], &[255; 4]);
}
