"""Which AWS operations a function's code can call, read from the source (no AWS, no moto).

Only the adapters call boto3 (`self._client.put_item(...)`, `self._client().send_message(...)`,
`get_paginator("query")`). From an entry point (a handler's app.py, the worker's package) this follows
calls through the package: `self.table.get(...)` where `table` is annotated (or assigned) as a
`JobTable`, a parameter annotated `ecs: EcsTasks`, `self.services.table.put(...)` through a dataclass
field, a module-level function, a constructor or classmethod, a method's return annotation, a method
or function handed on as a callback (`governor.run(self.ecs.stop_task)`). The result is each adapter
class with the operations its reachable methods call, e.g. {("JobTable", "dynamodb:GetItem"), ...}.

A receiver whose type cannot be read (an unannotated local, a callable) is not followed: the grants
test then reports the grant as unused, never silently allows a call.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import botocore.session
from botocore import xform_name

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "batchgate"
PACKAGE = "batchgate"
# Tooling for ops, not what a deployed function or worker runs.
OPS_PACKAGE = "batchgate.ops"
# The boto3 services the runtime may use; an IAM action is "<service>:<Operation>".
SERVICES = ("dynamodb", "ecs", "sqs", "events", "logs", "cloudwatch", "scheduler", "lambda")
# The clients adapters call: an attribute or name ending in "client" (self._client, self._client(), client).
CLIENT_NAMES = ("client", "_client")


@dataclass(frozen=True)
class AdapterCall:
    """An operation an adapter class calls: ("JobTable", "dynamodb:GetItem")."""

    adapter: str
    action: str


@cache
def operations() -> dict[str, dict[str, str]]:
    """Per service, boto3's method name -> the IAM action ("put_item" -> "dynamodb:PutItem")."""
    session = botocore.session.get_session()
    found: dict[str, dict[str, str]] = {}
    for service in SERVICES:
        model = session.get_service_model(service)
        found[service] = {xform_name(name): f"{service}:{name}" for name in model.operation_names}
    return found


@dataclass
class Scope:
    """A function or method: where its names resolve, and what its parameters and locals are."""

    module: str
    owner: str | None  # the class's qualified name, for methods
    node: ast.AST
    names: dict[str, set[str]] = field(default_factory=dict)


@dataclass
class ClassInfo:
    qualname: str
    module: str
    bases: list[str]
    methods: dict[str, ast.FunctionDef | ast.AsyncFunctionDef]
    attributes: dict[str, set[str]] = field(default_factory=dict)


class CodeIndex:
    """The runtime package's modules: classes, module-level functions and what each name refers to."""

    def __init__(self, root: Path = LAYER) -> None:
        self.root = root
        self.modules: dict[str, ast.Module] = {}
        self.imports: dict[str, dict[str, str]] = {}
        self.classes: dict[str, ClassInfo] = {}
        self.functions: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        # The boto3 services a module's clients are of (from its mypy_boto3_<service> imports).
        self.services: dict[str, tuple[str, ...]] = {}
        self._scopes: dict[tuple[int, str | None], Scope] = {}
        for path in sorted((root / PACKAGE).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            if module == OPS_PACKAGE or module.startswith(OPS_PACKAGE + "."):
                continue
            self.add_module(module, ast.parse(path.read_text(), str(path)))
        self.read_attributes()

    def read_attributes(self) -> None:
        """Every class's attribute types, once all modules are in (annotations name other modules')."""
        for info in self.classes.values():
            self._read_attributes(info)
        # Scopes read meanwhile saw attributes still being read: read them again when needed.
        self._scopes.clear()

    def add_module(self, module: str, tree: ast.Module) -> None:
        self.modules[module] = tree
        names: dict[str, str] = {}
        services: list[str] = []
        for node in ast.walk(tree):  # imports anywhere: TYPE_CHECKING blocks, inside functions
            if isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                if node.module.startswith("mypy_boto3_"):
                    services.append(node.module.removeprefix("mypy_boto3_").split(".")[0])
        self.imports[module] = names
        self.services[module] = tuple(services)
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                qualname = f"{module}.{node.name}"
                names[node.name] = qualname
                methods = {
                    item.name: item
                    for item in node.body
                    if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
                }
                self.classes[qualname] = ClassInfo(
                    qualname, module, [ast.unparse(base) for base in node.bases], methods
                )
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names[node.name] = f"{module}.{node.name}"
                self.functions[f"{module}.{node.name}"] = node

    # --- types --------------------------------------------------------------------------------------

    def classes_in(self, module: str, annotation: ast.AST | None) -> set[str]:
        """The package classes an annotation names (`JobTable | None`, `"EcsTasks"`, `list[X]` too)."""
        if annotation is None:
            return set()
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            annotation = ast.parse(annotation.value, mode="eval").body
        found = set()
        for node in ast.walk(annotation):
            if isinstance(node, ast.Name):
                qualname = self.imports[module].get(node.id)
                if qualname in self.classes:
                    found.add(qualname)
        return found

    def _read_attributes(self, info: ClassInfo) -> None:
        """Attribute types: class-level annotations (dataclass fields), `self.x: T`, `self.x = T(...)`,
        `self.x = param` of an annotated parameter."""
        tree = next(
            node
            for node in self.modules[info.module].body
            if isinstance(node, ast.ClassDef) and f"{info.module}.{node.name}" == info.qualname
        )
        for item in tree.body:
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                info.attributes.setdefault(item.target.id, set()).update(
                    self.classes_in(info.module, item.annotation)
                )
        for method in info.methods.values():
            scope = self.scope(info.module, info.qualname, method)
            for node in ast.walk(method):
                targets: list[ast.expr] = []
                value: ast.expr | None = None
                annotation: ast.expr | None = None
                if isinstance(node, ast.Assign):
                    targets, value = node.targets, node.value
                elif isinstance(node, ast.AnnAssign):
                    targets, value, annotation = [node.target], node.value, node.annotation
                for target in targets:
                    if (
                        isinstance(target, ast.Attribute)
                        and isinstance(target.value, ast.Name)
                        and target.value.id == "self"
                    ):
                        types = self.classes_in(info.module, annotation) | self.expression_types(scope, value)
                        info.attributes.setdefault(target.attr, set()).update(types)

    def scope(self, module: str, owner: str | None, node: ast.AST) -> Scope:
        key = (id(node), owner)
        if key not in self._scopes:
            self._scopes[key] = self._read_scope(module, owner, node)
        return self._scopes[key]

    def _read_scope(self, module: str, owner: str | None, node: ast.AST) -> Scope:
        scope = Scope(module, owner, node)
        for function in ast.walk(node):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                arguments = function.args
                for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
                    self._bind(scope, argument.arg, self.classes_in(module, argument.annotation))
        if owner is not None:
            scope.names["self"] = {owner}
            scope.names["cls"] = {owner}
        # Locals assigned a constructed or returned object: `table = JobTable(...)`, `x = self.table`.
        for _ in range(2):  # twice: a local may be assigned from another local
            for statement in ast.walk(node):
                if isinstance(statement, ast.Assign):
                    types = self.expression_types(scope, statement.value)
                    for target in statement.targets:
                        if isinstance(target, ast.Name):
                            self._bind(scope, target.id, types)
                elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    self._bind(scope, statement.target.id, self.classes_in(module, statement.annotation))
                elif isinstance(statement, ast.NamedExpr):
                    self._bind(scope, statement.target.id, self.expression_types(scope, statement.value))
        return scope

    @staticmethod
    def _bind(scope: Scope, name: str, types: set[str]) -> None:
        if types:
            scope.names.setdefault(name, set()).update(types)

    def expression_types(self, scope: Scope, expression: ast.expr | None) -> set[str]:
        """The package classes an expression's value may be an instance of."""
        if isinstance(expression, ast.Name):
            return set(scope.names.get(expression.id, set()))
        if isinstance(expression, ast.Attribute):
            found = set()
            for owner in self.expression_types(scope, expression.value):
                found |= self.attribute_types(owner, expression.attr)
            return found
        if isinstance(expression, ast.Call):
            return self._call_types(scope, expression.func)
        if isinstance(expression, ast.IfExp):
            return self.expression_types(scope, expression.body) | self.expression_types(
                scope, expression.orelse
            )
        if isinstance(expression, ast.BoolOp):
            return set().union(*(self.expression_types(scope, value) for value in expression.values))
        return set()

    def _call_types(self, scope: Scope, callee: ast.expr) -> set[str]:
        """What a call returns: T(...) or T.from_settings(...) an instance of T (classmethods that
        build one); obj.method(...) what the method's return annotation names (`-> StreamOrderFold`)."""
        if isinstance(callee, ast.Name):
            qualname = self.imports[scope.module].get(callee.id)
            return {qualname} if qualname in self.classes else set()
        if not isinstance(callee, ast.Attribute):
            return set()
        if isinstance(callee.value, ast.Name):
            qualname = self.imports[scope.module].get(callee.value.id)
            if qualname in self.classes:
                return {qualname}
        found = set()
        for owner in self.expression_types(scope, callee.value):
            method = self.method(owner, callee.attr)
            if method:
                found |= self.classes_in(self.classes[method[0]].module, method[1].returns)
        return found

    def attribute_types(self, owner: str, attribute: str) -> set[str]:
        for info in self.lineage(owner):
            if attribute in info.attributes:
                return set(info.attributes[attribute])
        return set()

    def lineage(self, qualname: str) -> Iterator[ClassInfo]:
        """The class and its package base classes."""
        info = self.classes.get(qualname)
        if info is None:
            return
        yield info
        for base in info.bases:
            resolved = self.imports[info.module].get(base.split("[")[0])
            if resolved and resolved != qualname:
                yield from self.lineage(resolved)

    def method(self, owner: str, name: str) -> tuple[str, ast.FunctionDef | ast.AsyncFunctionDef] | None:
        for info in self.lineage(owner):
            if name in info.methods:
                return info.qualname, info.methods[name]
        return None

    # --- calls --------------------------------------------------------------------------------------

    def callees(self, scope: Scope) -> Iterator[tuple[str, str | None, ast.AST]]:
        """(module, owner class, node) of every package function or method `scope` calls, or passes on
        to be called (a callback: `governor.run(self.ecs.stop_task, ...)`, `executor.submit(f, ...)`)."""
        for node in ast.walk(scope.node):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                yield from self._named_callees(scope, node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                receivers = self.expression_types(scope, node.value)
                if isinstance(node.value, ast.Name):
                    qualname = self.imports[scope.module].get(node.value.id)
                    if qualname in self.classes:  # T.classmethod(...)
                        receivers.add(qualname)
                for owner in receivers:
                    yield from self._methods(owner, node.attr)

    def _named_callees(self, scope: Scope, name: str) -> Iterator[tuple[str, str | None, ast.AST]]:
        """f: a module-level function; T: T's constructor; an instance: its __call__."""
        for owner in scope.names.get(name, set()):
            yield from self._methods(owner, "__call__")
        qualname = self.imports[scope.module].get(name) or f"{scope.module}.{name}"
        if qualname in self.functions:
            yield qualname.rsplit(".", 1)[0], None, self.functions[qualname]
        elif qualname in self.classes:
            yield from self._methods(qualname, "__init__")
            yield from self._methods(qualname, "__post_init__")  # dataclasses

    def _methods(self, owner: str, name: str) -> Iterator[tuple[str, str | None, ast.AST]]:
        found = self.method(owner, name)
        if found:
            yield self.classes[found[0]].module, found[0], found[1]

    def direct_operations(self, scope: Scope) -> Iterator[str]:
        """The IAM actions of the boto3 calls written in `scope` itself."""
        services = self.services[scope.module]
        for call in ast.walk(scope.node):
            if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Attribute):
                continue
            receiver = call.func.value
            if isinstance(receiver, ast.Call):  # self._client().send_message(...)
                receiver = receiver.func
            name = receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", "")
            if not name.endswith(CLIENT_NAMES):
                continue
            method = call.func.attr
            if method == "get_paginator" and call.args and isinstance(call.args[0], ast.Constant):
                method = str(call.args[0].value)
            yield from self._action(method, services)

    def _action(self, method: str, services: Iterable[str]) -> Iterator[str]:
        candidates = [
            (service, actions[method])
            for service, actions in operations().items()
            if method in actions and (not services or service in services)
        ]
        if len(candidates) > 1:
            raise AssertionError(f"{method} is an operation of several services: {candidates}")
        for _, action in candidates:
            yield action

    def reachable_calls(self, roots: Iterable[Scope]) -> set[AdapterCall]:
        """Every adapter operation reachable from `roots`, by the adapter class that makes it."""
        found: set[AdapterCall] = set()
        seen: set[int] = set()
        pending = list(roots)
        while pending:
            scope = pending.pop()
            if id(scope.node) in seen:
                continue
            seen.add(id(scope.node))
            adapter = (scope.owner or scope.module).rsplit(".", 1)[-1]
            found.update(AdapterCall(adapter, action) for action in self.direct_operations(scope))
            for module, owner, node in self.callees(scope):
                pending.append(self.scope(module, owner, node))
        return found

    def module_scope(self, module: str) -> Scope:
        return self.scope(module, None, self.modules[module])

    def scopes_of(self, module: str) -> Iterator[Scope]:
        """Every function and method a module defines, each with its class."""
        for node in self.modules[module].body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield self.scope(module, None, node)
            elif isinstance(node, ast.ClassDef):
                owner = f"{module}.{node.name}"
                for method in self.classes[owner].methods.values():
                    yield self.scope(module, owner, method)

    def add_entry_point(self, module: str, source: str) -> Scope:
        """An entry point outside the package (a handler's app.py), as one scope: its module."""
        self.add_module(module, ast.parse(source, module))
        return self.module_scope(module)


@cache
def package_index() -> CodeIndex:
    """The runtime package, read once (the index is not changed by the functions below)."""
    return CodeIndex()


def handler_calls(function_dir: str) -> set[AdapterCall]:
    """What a Lambda handler (functions/<dir>/app.py) can call: from its module, through its services."""
    index = package_index()
    source = (ROOT / "functions" / function_dir / "app.py").read_text()
    root = index.add_entry_point(f"functions.{function_dir}.app", source)
    return index.reachable_calls([root])


def package_calls(package: str) -> set[AdapterCall]:
    """What a whole runtime package (the warm worker) can call: every function and method in it."""
    index = package_index()
    roots = [
        scope
        for module in index.modules
        if module == package or module.startswith(package + ".")
        for scope in index.scopes_of(module)
    ]
    return index.reachable_calls(roots)


def adapter_calls() -> set[AdapterCall]:
    """Every operation any adapter module calls (what the grants tables must account for)."""
    index = package_index()
    return index.reachable_calls(
        scope
        for module in index.modules
        if module.startswith(f"{PACKAGE}.adapters.")
        for scope in index.scopes_of(module)
    )
