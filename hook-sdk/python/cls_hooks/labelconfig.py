"""The Label Studio labeling config (``<View>…</View>``), parsed as the
Rust ``labelconfig`` crate does, so a Python hook and the server agree on
what a project expects: object tags (``<Image>``, ``<Text>``, …), control
tags (``<Choices>``, ``<RectangleLabels>``, …) with their ``<Label>`` /
``<Choice>`` options, and the lookups hooks need.

>>> config = LabelConfig.parse('''
...   <View>
...     <Image name="image" value="$image"/>
...     <Choices name="orientation" toName="image" choice="single">
...       <Choice value="0"/><Choice value="90"/><Choice value="180"/><Choice value="270"/>
...     </Choices>
...   </View>''')
>>> b = config.choices_for_image()
>>> b.from_name, b.to_name, b.object.field, b.resolve_label("90")
('orientation', 'image', 'image', '90')
"""

from xml.parsers import expat

from .errors import BadConfig

#: Known control tags (a result's ``type`` is the tag in lower case).
CONTROL_TAGS = (
    "Choices", "Taxonomy", "Labels", "HyperTextLabels", "ParagraphLabels",
    "TimeSeriesLabels", "RectangleLabels", "PolygonLabels", "KeyPointLabels",
    "BrushLabels", "EllipseLabels", "Rectangle", "Polygon", "KeyPoint", "Brush",
    "Ellipse", "VideoRectangle", "TextArea", "Rating", "Number", "DateTime",
)  # fmt: skip
#: Controls whose options are ``<Label>`` children.
LABEL_TAGS = (
    "Labels", "HyperTextLabels", "ParagraphLabels", "TimeSeriesLabels",
    "RectangleLabels", "PolygonLabels", "KeyPointLabels", "BrushLabels", "EllipseLabels",
)  # fmt: skip
#: Known object tags; ``PDF`` is read as ``Pdf``.
OBJECT_TAGS = (
    "Image", "Text", "HyperText", "Audio", "AudioPlus", "Video", "TimeSeries",
    "Paragraphs", "Table", "Pdf", "List", "Markdown", "Chat",
)  # fmt: skip
#: Objects whose data is text the host can feed a model as a string.
TEXTUAL_TAGS = ("Text", "HyperText", "Paragraphs", "Markdown")
#: Layout tags and options: neither objects nor controls.
LAYOUT_TAGS = (
    "View", "Header", "Style", "Label", "Choice", "Relation", "Relations", "Filter",
    "Collapse", "Panel", "Shortcut", "Hypertext", "Char",
)  # fmt: skip


class ParseError(BadConfig):
    """The labeling config cannot be parsed."""


class LookupFailed(BadConfig):
    """A lookup in a parsed config found nothing suitable."""


class _Node:
    __slots__ = ("tag", "attrs", "children", "line")

    def __init__(self, tag, attrs, line):
        self.tag, self.attrs, self.children, self.line = tag, attrs, [], line

    def descendants(self):
        """This node and every element below it, in document order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))


def _parse_xml(xml):
    parser = expat.ParserCreate()
    root = []
    stack = []

    def start(tag, attrs):
        node = _Node(tag, attrs, parser.CurrentLineNumber)
        if stack:
            stack[-1].children.append(node)
        else:
            root.append(node)
        stack.append(node)

    def end(_tag):
        stack.pop()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(xml, True)
    except expat.ExpatError as e:
        raise ParseError("labeling config is not valid XML: %s" % e) from None
    if not root:
        raise ParseError("labeling config is not valid XML: no root element")
    return root[0]


def _attribute(node, name):
    """An attribute, also accepted in all-lower-case (``toname``), as Label Studio does."""
    value = node.attrs.get(name)
    return value if value is not None else node.attrs.get(name.lower())


def _field_of(value):
    if not value.startswith("$"):
        return None
    field = value[1:].strip()
    return field or None


class Label:
    """One ``<Label>`` or ``<Choice>``: ``value``, ``alias`` and, for
    ``<Taxonomy>``, the ``path`` of enclosing choice values."""

    __slots__ = ("value", "alias", "path")

    def __init__(self, value, alias=None, path=()):
        self.value, self.alias, self.path = value, alias, list(path)

    def __repr__(self):
        return "Label(%r)" % self.value


def _options(kind, node):
    if kind in LABEL_TAGS:
        wanted = "Label"
    elif kind == "Taxonomy":
        out = []
        _collect_tree(node, [], out)
        return out
    elif kind == "Choices":
        wanted = "Choice"
    else:
        return []
    return [
        Label(n.attrs["value"], n.attrs.get("alias"))
        for n in node.descendants()
        if n.tag == wanted and "value" in n.attrs
    ]


def _collect_tree(node, path, out):
    for child in node.children:
        if child.tag == "Choice":
            if "value" not in child.attrs:
                continue
            out.append(Label(child.attrs["value"], child.attrs.get("alias"), path))
            _collect_tree(child, path + [child.attrs["value"]], out)
        else:
            _collect_tree(child, path, out)


class Control:
    """A control tag: ``name`` (a result's ``from_name``), ``kind`` (the tag,
    e.g. ``"Choices"``), ``to_names``, ``labels`` (:class:`Label` list),
    ``choice`` (``single``/``single-radio``/``multiple``) and
    ``dynamic_labels`` (options come from the task)."""

    __slots__ = ("name", "kind", "to_names", "labels", "choice", "dynamic_labels")

    def __init__(self, name, kind, to_names, labels, choice, dynamic_labels):
        self.name, self.kind, self.to_names = name, kind, to_names
        self.labels, self.choice, self.dynamic_labels = labels, choice, dynamic_labels

    def __repr__(self):
        return "Control(%r, %s → %s)" % (self.name, self.kind, ",".join(self.to_names))

    @property
    def result_type(self):
        """The result ``type``: the tag in lower case."""
        return self.kind.lower()

    def label_values(self):
        """The label values in config order."""
        return [l.value for l in self.labels]

    def resolve_label(self, name):
        """The label value a model's class name stands for: the exact value,
        else the label whose ``alias`` it is, else a value equal ignoring ASCII
        case. ``None`` when the control has no such label."""
        for l in self.labels:
            if l.value == name:
                return l.value
        for l in self.labels:
            if l.alias is not None and l.alias == name:
                return l.value
        folded = _ascii_lower(name)
        for l in self.labels:
            if _ascii_lower(l.value) == folded:
                return l.value
        return None

    def accepts_label(self, label):
        """Whether a result may carry ``label`` as written (value or alias)."""
        return self.dynamic_labels or any(l.value == label or l.alias == label for l in self.labels)

    def targets(self, object_name):
        """Whether this control labels the object called ``object_name``."""
        return object_name in self.to_names


def _ascii_lower(s):
    return s.translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


class Object:
    """An object tag: ``name`` (a result's ``to_name``), ``kind`` (the tag,
    e.g. ``"Image"``), ``value`` as written (``$image``), ``field`` (the task
    data key, ``image``) and ``value_type``."""

    __slots__ = ("name", "kind", "value", "field", "value_type")

    def __init__(self, name, kind, value, field, value_type):
        self.name, self.kind, self.value, self.field, self.value_type = name, kind, value, field, value_type

    def __repr__(self):
        return "Object(%r, %s, %r)" % (self.name, self.kind, self.value)

    @property
    def is_textual(self):
        """Whether the data is text (``<Text>``, ``<HyperText>``, ``<Paragraphs>``, ``<Markdown>``)."""
        return self.kind in TEXTUAL_TAGS

    def value_is_url(self):
        """Whether the task data holds a URL rather than the data itself."""
        return self.value_type == "url" if self.is_textual else True


class Binding:
    """A control with one object it labels: ``from_name``/``to_name`` of a
    result and the labels it may use."""

    __slots__ = ("control", "object")

    def __init__(self, control, obj):
        self.control, self.object = control, obj

    def __repr__(self):
        return "Binding(%r → %r)" % (self.from_name, self.to_name)

    @property
    def from_name(self):
        return self.control.name

    @property
    def to_name(self):
        return self.object.name

    def resolve_label(self, name):
        """See :meth:`Control.resolve_label`."""
        return self.control.resolve_label(name)

    def labels(self):
        """The control's label values in config order."""
        return self.control.label_values()


class LabelConfig:
    """A parsed labeling config: ``objects`` and ``controls`` in config order."""

    def __init__(self, objects, controls):
        self.objects, self.controls = objects, controls

    @classmethod
    def parse(cls, xml):
        """Parses a config. Known object tags and any other tag with a
        ``name`` and a ``$field`` value become objects; known control tags and
        any other tag with a ``toName`` become controls; other tags are
        layout. Raises :class:`ParseError` (a :class:`BadConfig`)."""
        root = _parse_xml(xml)
        objects, controls, names = [], [], {}
        for node in root.descendants():
            tag = node.tag
            if tag in LAYOUT_TAGS:
                continue
            to_name = _attribute(node, "toName")
            control_kind = tag if tag in CONTROL_TAGS or to_name is not None else None
            object_kind = None
            if control_kind is None:
                if tag in OBJECT_TAGS or tag == "PDF":
                    object_kind = "Pdf" if tag == "PDF" else tag
                else:
                    value = node.attrs.get("value", node.attrs.get("valueList"))
                    if "name" in node.attrs and value is not None and value.startswith("$"):
                        object_kind = tag
            if control_kind is None and object_kind is None:
                continue
            name = node.attrs.get("name")
            if name is None:
                raise ParseError("<%s> at line %d has no name attribute" % (tag, node.line))
            if name in names:
                raise ParseError(
                    "the name '%s' is used by more than one tag (<%s> and <%s>)" % (name, names[name], tag)
                )
            names[name] = tag
            if control_kind is not None:
                choice = node.attrs.get("choice")
                controls.append(
                    Control(
                        name,
                        control_kind,
                        [t.strip() for t in (to_name or "").split(",") if t.strip()],
                        _options(control_kind, node),
                        choice if choice in ("multiple", "single-radio") else "single",
                        node.attrs.get("value", "").startswith("$"),
                    )
                )
            else:
                value = node.attrs.get("value", node.attrs.get("valueList", ""))
                objects.append(Object(name, object_kind, value, _field_of(value), _attribute(node, "valueType")))
        return cls(objects, controls)

    def object(self, name):
        """The object called ``name``, or ``None``."""
        return next((o for o in self.objects if o.name == name), None)

    def control(self, name):
        """The control called ``name``, or ``None``."""
        return next((c for c in self.controls if c.name == name), None)

    def controls_of(self, kind):
        """The controls of one kind (tag), in config order."""
        return [c for c in self.controls if c.kind == kind]

    def objects_of(self, kind):
        """The objects of one kind (tag), in config order."""
        return [o for o in self.objects if o.kind == kind]

    def targets_of(self, control):
        """The objects a control labels, in ``toName`` order (unknown names skipped)."""
        return [o for o in (self.object(n) for n in control.to_names) if o is not None]

    def binding(self, kind, object_kind):
        """The first control of ``kind`` that labels an object of ``object_kind``."""
        return self.binding_where(kind, lambda o: o.kind == object_kind, "an <%s>" % object_kind)

    def binding_where(self, kind, accept, description):
        """The first control of ``kind`` with a target for which ``accept``
        holds; ``description`` names the wanted object in the error."""
        for control in self.controls:
            if control.kind != kind:
                continue
            for obj in self.targets_of(control):
                if accept(obj):
                    return Binding(control, obj)
        available = ["%s (<%s> → %s)" % (c.name, c.kind, ",".join(c.to_names)) for c in self.controls]
        suffix = " (it has: %s)" % ", ".join(available) if available else " (it has no control tags)"
        raise LookupFailed("the labeling config has no <%s> pointing at %s%s" % (kind, description, suffix))

    def binding_named(self, name):
        """The binding of the control called ``name`` to its first target."""
        control = self.control(name)
        if control is None:
            raise LookupFailed("the labeling config has no control named '%s'" % name)
        targets = self.targets_of(control)
        if not targets:
            raise LookupFailed("the labeling config has no object named '%s'" % ",".join(control.to_names))
        return Binding(control, targets[0])

    def choices_for_image(self):
        """``<Choices>`` for an ``<Image>``: image classification."""
        return self.binding("Choices", "Image")

    def choices_for_text(self):
        """``<Choices>`` for a text object: text classification."""
        return self.binding_where("Choices", lambda o: o.is_textual, "a text object")

    def rectangle_labels_for_image(self):
        """``<RectangleLabels>`` for an ``<Image>``: object detection."""
        return self.binding("RectangleLabels", "Image")

    def polygon_labels_for_image(self):
        """``<PolygonLabels>`` for an ``<Image>``: polygon segmentation."""
        return self.binding("PolygonLabels", "Image")

    def keypoint_labels_for_image(self):
        """``<KeyPointLabels>`` for an ``<Image>``: keypoints."""
        return self.binding("KeyPointLabels", "Image")

    def brush_labels_for_image(self):
        """``<BrushLabels>`` for an ``<Image>``: mask segmentation."""
        return self.binding("BrushLabels", "Image")

    def labels_for_text(self):
        """``<Labels>`` for a text object: named entities."""
        return self.binding_where("Labels", lambda o: o.is_textual, "a text object")

    def textarea_for(self, object_kind):
        """``<TextArea>`` for an object of ``object_kind`` (e.g. ``"Image"``)."""
        return self.binding("TextArea", object_kind)
