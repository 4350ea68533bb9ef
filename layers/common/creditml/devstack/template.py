"""Read template.yaml: its resources, functions and HTTP routes, with CloudFormation
intrinsics resolved against the local stack's physical resources.

The local stack derives everything from this file (no second list of routes or tables), so
what runs locally is what deploys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

FUNCTION = "AWS::Serverless::Function"
HTTP_API = "AWS::Serverless::HttpApi"
# What Lambda gives a function whose template sets neither (SAM leaves them unset).
DEFAULT_MEMORY_MB = 128
DEFAULT_TIMEOUT_SECONDS = 3
_TAGS = {
    "!Ref": "Ref",
    "!GetAtt": "Fn::GetAtt",
    "!Sub": "Fn::Sub",
    "!Join": "Fn::Join",
    "!If": "Fn::If",
    "!Equals": "Fn::Equals",
    "!Not": "Fn::Not",
    "!And": "Fn::And",
    "!Or": "Fn::Or",
    "!Select": "Fn::Select",
    "!Split": "Fn::Split",
    "!FindInMap": "Fn::FindInMap",
    "!GetAZs": "Fn::GetAZs",
    "!ImportValue": "Fn::ImportValue",
    "!Condition": "Condition",
}


# What `!Ref AWS::NoValue` resolves to: the property or list item it stands for is dropped.
NO_VALUE: Any = object()


class TemplateError(ValueError):
    """The template uses something the local stack cannot emulate."""


class _CfnLoader(yaml.SafeLoader):
    """A safe YAML loader that reads CloudFormation short-form tags as their long form."""


def _intrinsic(fn_name: str) -> Any:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if fn_name == "Fn::GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {fn_name: value}

    return construct


for _short, _long in _TAGS.items():
    _CfnLoader.add_constructor(_short, _intrinsic(_long))


@dataclass(frozen=True)
class Route:
    """One HttpApi route: `method` is upper-case or ANY; `path` uses {name} / {name+}."""

    method: str
    path: str
    function: str

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    @cached_property
    def _pattern(self) -> re.Pattern[str]:
        regex = ""
        for part in re.split(r"(\{[^}]+\})", self.path):
            if part.startswith("{") and part.endswith("+}"):
                regex += f"(?P<{_group(part[1:-2])}>.+)"
            elif part.startswith("{"):
                regex += f"(?P<{_group(part[1:-1])}>[^/]+)"
            else:
                regex += re.escape(part)
        return re.compile(f"^{regex}$")

    @property
    def specificity(self) -> tuple[int, int, int, int]:
        """Sort key, most specific first, as API Gateway picks routes: exact paths over
        parameters, parameters over greedy paths, a named method over ANY."""
        greedy = int("+}" in self.path)
        params = self.path.count("{")
        return (greedy, params, -len(self.path), int(self.method == "ANY"))

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if self.method not in ("ANY", method):
            return None
        found = self._pattern.match(path)
        if found is None:
            return None
        return {_name(group): value for group, value in found.groupdict().items()}


def _group(name: str) -> str:
    return "p_" + re.sub(r"\W", "_", name)


def _name(group: str) -> str:
    return group[2:]


@dataclass(frozen=True)
class FunctionSpec:
    """A function of the template: where its code is and what it serves."""

    logical_id: str
    code_uri: Path
    handler: str
    environment: Mapping[str, Any]
    routes: tuple[Route, ...]
    events: Mapping[str, Any] = field(default_factory=dict)
    memory_mb: int = DEFAULT_MEMORY_MB
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    # Retries and failure destination of asynchronous invocations (unresolved intrinsics).
    event_invoke_config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def module_path(self) -> Path:
        module, _, _ = self.handler.rpartition(".")
        return self.code_uri / (module.replace(".", "/") + ".py")

    @property
    def handler_name(self) -> str:
        return self.handler.rpartition(".")[2]


class Template:
    """A parsed SAM template rooted at `path`'s folder."""

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self.root = self.path.parent
        with self.path.open(encoding="utf-8") as handle:
            self.document: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
        self.resources: dict[str, dict[str, Any]] = self.document.get("Resources", {})
        self.parameters: dict[str, dict[str, Any]] = self.document.get("Parameters", {})

    def resources_of(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.resources.items()
            if resource.get("Type") == resource_type
        }

    def _number(self, props: Mapping[str, Any], name: str, default: int) -> int:
        """A function's numeric property (its own, else the Globals', else Lambda's default);
        a `!Ref` to a template parameter takes that parameter's default."""
        globals_ = self.document.get("Globals", {}).get("Function", {})
        value = props.get(name, globals_.get(name, default))
        if isinstance(value, dict):
            value = Resolver(self, {}, {}, {}).resolve(value)
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise TemplateError(f"{name} must be a positive whole number, not {value!r}")
        return value

    @cached_property
    def functions(self) -> dict[str, FunctionSpec]:
        """Every AWS::Serverless::Function with Globals applied."""
        globals_ = self.document.get("Globals", {}).get("Function", {})
        global_env = globals_.get("Environment", {}).get("Variables", {})
        specs = {}
        for logical_id, resource in self.resources_of(FUNCTION).items():
            props = resource.get("Properties", {})
            env = {**global_env, **props.get("Environment", {}).get("Variables", {})}
            events = props.get("Events", {})
            routes = tuple(
                Route(
                    method=str(event["Properties"]["Method"]).upper(),
                    path=str(event["Properties"]["Path"]),
                    function=logical_id,
                )
                for event in events.values()
                if event.get("Type") == "HttpApi"
            )
            specs[logical_id] = FunctionSpec(
                logical_id=logical_id,
                code_uri=(self.root / props["CodeUri"]).resolve(),
                handler=props.get("Handler", globals_.get("Handler", "app.handler")),
                environment=env,
                routes=routes,
                events=events,
                memory_mb=self._number(props, "MemorySize", DEFAULT_MEMORY_MB),
                timeout_seconds=self._number(props, "Timeout", DEFAULT_TIMEOUT_SECONDS),
                event_invoke_config=props.get("EventInvokeConfig", {}),
            )
        return specs

    @cached_property
    def routes(self) -> list[Route]:
        """Every HTTP route, most specific first."""
        routes = [route for spec in self.functions.values() for route in spec.routes]
        keys = [route.key for route in routes]
        duplicates = {key for key in keys if keys.count(key) > 1}
        if duplicates:
            raise TemplateError(f"routes declared twice: {sorted(duplicates)}")
        return sorted(routes, key=lambda route: route.specificity)

    def route_for(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route API Gateway would pick for this request, with its path parameters."""
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None


class Resolver:
    """Resolves intrinsic functions against physical ids of the local stack."""

    def __init__(
        self,
        template: Template,
        physical: Mapping[str, str],
        attributes: Mapping[str, Mapping[str, str]],
        pseudo: Mapping[str, str],
    ) -> None:
        self._template = template
        self._physical = physical
        self._attributes = attributes
        self._pseudo = pseudo

    def resolve(self, value: Any) -> Any:
        """`value` with its intrinsics resolved; `!Ref AWS::NoValue` (through `!If`)
        removes the list item or property it stands for, as CloudFormation does."""
        if isinstance(value, list):
            items = (self.resolve(item) for item in value)
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return NO_VALUE if arg == "AWS::NoValue" else self._ref(str(arg))
            if key == "Fn::GetAtt":
                return self._get_att(*arg)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                separator, items = arg
                return str(separator).join(str(self.resolve(item)) for item in items)
            if key == "Fn::If":
                name, when_true, when_false = arg
                return self.resolve(when_true if self.condition(str(name)) else when_false)
            if key.startswith("Fn::"):
                raise TemplateError(f"the local stack does not emulate {key}")
        resolved = {key: self.resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not NO_VALUE}

    def condition(self, name: str) -> bool:
        """The template condition `name`, judged on the parameters' defaults."""
        conditions: dict[str, Any] = self._template.document.get("Conditions", {})
        if name not in conditions:
            raise TemplateError(f"no condition {name} in the template")
        return self._holds(conditions[name])

    def _holds(self, value: Any) -> bool:
        if not isinstance(value, dict) or len(value) != 1:
            raise TemplateError(f"not a condition: {value!r}")
        ((key, arg),) = value.items()
        if key == "Fn::Equals":
            left, right = (self.resolve(item) for item in arg)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self._holds(arg[0])
        if key == "Fn::And":
            return all(self._holds(item) for item in arg)
        if key == "Fn::Or":
            return any(self._holds(item) for item in arg)
        if key == "Condition":
            return self.condition(str(arg))
        raise TemplateError(f"the local stack does not emulate {key} in a condition")

    def _ref(self, name: str) -> str:
        if name in self._pseudo:
            return self._pseudo[name]
        if name in self._physical:
            return self._physical[name]
        function = name.removesuffix(".Alias")
        if function in self._template.resources_of(FUNCTION):  # locally: named by its id
            return function
        if name in self._template.parameters:
            return str(self._template.parameters[name].get("Default", ""))
        raise TemplateError(f"cannot resolve Ref {name} locally")

    def _get_att(self, logical_id: str, attribute: str) -> str:
        try:
            return self._attributes[logical_id][attribute]
        except KeyError as exc:
            raise TemplateError(f"cannot resolve GetAtt {logical_id}.{attribute}") from exc

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])

        def replace(found: re.Match[str]) -> str:
            name = found.group(1)
            if name in variables:
                return str(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                return self._get_att(*name.split(".", 1))
            return self._ref(name)

        return re.sub(r"\$\{([^}!]+)\}", replace, str(text))
