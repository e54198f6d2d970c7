//! Labeling configs from Label Studio's templates (`label_studio/annotation_templates`),
//! as users paste them, shared by the parser and validation tests.
#![allow(dead_code)]

/// computer-vision/image-classification
pub const IMAGE_CLASSIFICATION: &str = r#"<View>
  <Image name="image" value="$image"/>
  <Choices name="choice" toName="image">
    <Choice value="Adult content"/>
    <Choice value="Weapons" />
    <Choice value="Violence" />
  </Choices>
</View>"#;

/// computer-vision/object-detection-with-bounding-boxes
pub const OBJECT_DETECTION: &str = r#"<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="Airplane" background="green"/>
    <Label value="Car" background="blue"/>
  </RectangleLabels>
</View>"#;

/// computer-vision/semantic-segmentation-with-polygons
pub const POLYGONS: &str = r#"<View>
  <Header value="Select label and click the image to start"/>
  <Image name="image" value="$image" zoom="true"/>
  <PolygonLabels name="label" toName="image"
                 strokeWidth="3" pointSize="small"
                 opacity="0.9">
    <Label value="Airplane" background="red"/>
    <Label value="Car" background="blue"/>
  </PolygonLabels>
</View>"#;

/// computer-vision/semantic-segmentation-with-masks
pub const BRUSH: &str = r#"<View>
  <Image name="image" value="$image" zoom="true"/>
  <BrushLabels name="tag" toName="image">
    <Label value="Airplane" background="rgba(255, 0, 0, 0.7)"/>
    <Label value="Car" background="rgba(0, 0, 255, 0.7)"/>
  </BrushLabels>
</View>"#;

/// computer-vision/keypoints
pub const KEYPOINTS: &str = r#"<View>
  <KeyPointLabels name="kp-1" toName="img-1">
    <Label value="Face" background="red" />
    <Label value="Nose" background="green" />
  </KeyPointLabels>
  <Image name="img-1" value="$img" />
</View>"#;

/// computer-vision/optical-character-recognition
pub const OCR: &str = r#"<View>
  <Image name="image" value="$ocr"/>
  <Labels name="label" toName="image">
    <Label value="Text" background="green"/>
    <Label value="Handwriting" background="blue"/>
  </Labels>
  <Rectangle name="bbox" toName="image" strokeWidth="3"/>
  <Polygon name="poly" toName="image" strokeWidth="3"/>
  <TextArea name="transcription" toName="image"
            editable="true"
            perRegion="true"
            required="true"
            maxSubmissions="1"
            rows="5"
            placeholder="Recognized Text"
            displayMode="region-list"
            />
</View>"#;

/// natural-language-processing/text-classification
pub const SENTIMENT: &str = r#"<View>
  <Header value="Choose text sentiment:"/>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single" showInline="true">
    <Choice value="Positive"/>
    <Choice value="Negative"/>
    <Choice value="Neutral"/>
  </Choices>
</View>"#;

/// natural-language-processing/named-entity-recognition
pub const NER: &str = r#"<View>
  <Labels name="label" toName="text">
    <Label value="PER" background="red"/>
    <Label value="ORG" background="darkorange"/>
    <Label value="LOC" background="orange"/>
    <Label value="MISC" background="green"/>
  </Labels>

  <Text name="text" value="$text"/>
</View>"#;

/// natural-language-processing/taxonomy
pub const TAXONOMY: &str = r#"<View>
  <Text name="text" value="$text"/>
  <Taxonomy name="taxonomy" toName="text">
    <Choice value="Archaea" />
    <Choice value="Bacteria" />
    <Choice value="Eukarya">
      <Choice value="Human" />
      <Choice value="Oppossum" />
      <Choice value="Extraterrestial" />
    </Choice>
  </Taxonomy>
</View>"#;

/// ranking-and-scoring/pairwise-comparison
pub const PAIRWISE: &str = r#"<View>
  <Header value="Select one of two items"/>
  <Pairwise name="pw" toName="text1,text2" />
  <Text name="text1" value="$text1" />
  <Text name="text2" value="$text2" />
</View>"#;

/// audio-speech-processing/speech-transcription
pub const TRANSCRIPTION: &str = r#"<View>
  <Header value="Listen to the audio"/>
  <Audio name="audio" value="$audio"/>
  <Header value="Write the transcription"/>
  <TextArea name="transcription" toName="audio" rows="4" editable="true" maxSubmissions="1"/>
</View>"#;

/// Multi-label image classification with aliases and a rating, mixed layouts.
pub const MULTI_LABEL_WITH_ALIASES: &str = r#"<View>
  <View style="display: flex">
    <Image name="photo" value="$photo"/>
    <View>
      <Choices name="tags" toName="photo" choice="multiple">
        <View><Choice value="Indoor" alias="in"/></View>
        <Choice value="Outdoor" alias="out"/>
        <Choice value="People"/>
      </Choices>
      <Rating name="quality" toName="photo" maxRating="5"/>
    </View>
  </View>
</View>"#;

/// The text-classification config of the `text-post` example.
pub const TEXT_FROM_URL: &str = r#"<View>
  <Text name="review" value="$url" valueType="url"/>
  <Choices name="sentiment" toname="review">
    <Choice value="negative"/><Choice value="positive"/>
  </Choices>
</View>"#;
