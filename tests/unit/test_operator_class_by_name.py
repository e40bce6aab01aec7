"""`--ingress-class-name`: the class is known by the flag, IngressClass objects are neither
listed nor watched (no cluster-scoped right), and Ingresses of that class are ours."""

from __future__ import annotations

from pathlib import Path

from ingress_operator.cli import parser, settings_from
from ingress_operator.controller import Controller
from ingress_operator.indices import INGRESS_CLASSES, RESOURCES, watched
from ingress_operator.ingress_semantics import is_ours
from ingress_operator.model import parse_ingress
from ingress_operator.settings import Settings
from test_operator_render import ingress


def test_the_flag_reaches_the_settings() -> None:
    args = ["--command-socket", "s", "--namespace", "a", "--ingress-class-name", "edge"]
    settings = settings_from(parser().parse_args(args))
    assert (settings.ingress_class_name, settings.namespaces) == ("edge", ("a",))
    assert settings_from(parser().parse_args(["--command-socket", "s"])).ingress_class_name is None


def test_ingress_classes_are_not_watched_when_the_class_is_named() -> None:
    assert watched(None) == RESOURCES
    assert INGRESS_CLASSES in RESOURCES
    assert watched("edge") == tuple(r for r in RESOURCES if r != INGRESS_CLASSES)


def test_the_named_class_is_ours_and_nothing_else_is() -> None:
    settings = Settings(command_socket=Path("s"), ingress_class_name="edge")
    controller = Controller(settings)
    indices = controller.indices
    assert indices.resources == watched("edge")
    classes, render = indices.classes, settings.render
    ours = parse_ingress(ingress("a", class_name="edge"))
    other = parse_ingress(ingress("b", class_name="nginx"))
    classless = parse_ingress(ingress("c", class_name=None))
    legacy = ingress("d", class_name=None, annotations={"kubernetes.io/ingress.class": "edge"})
    assert is_ours(ours, classes, render) and is_ours(parse_ingress(legacy), classes, render)
    assert not is_ours(other, classes, render) and not is_ours(classless, classes, render)
