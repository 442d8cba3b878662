"""Answers of ``network_visualization`` written in different ways, for the similarity tests and benchmark.

:data:`STYLES` holds independent correct implementations of four graded functions, written apart
from the reference solution and from each other (``tests/test_similarity.py`` checks each one
against the reference on a small CNN). The disguises are what students do to a copy:

- :func:`rename_locals`: rename local variables;
- :func:`nested_functions_first`: move nested function definitions to the top of the body (reorder);
- :func:`recomment`: drop every comment and write other ones.

:func:`submission` puts bodies into the release notebook (answer cells not given keep their stub),
using :func:`autograder.batch.samples.with_answer_body`.
"""

from __future__ import annotations

import ast
import copy
import random
import re
import textwrap

import nbformat

from autograder.batch.samples import correct_submission, with_answer_body, with_one_answer_blank

ASSIGNMENT = "network_visualization"

_REGION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[^\n]*\n(.*?)^[ \t]*### END SOLUTION[^\n]*(\n|$)",
                     re.MULTILINE | re.DOTALL)

#: ``style -> grade_id -> function body``: independent correct implementations.
STYLES: dict[str, dict[str, str]] = {
    "a": {
        "compute_saliency_maps": '''
            images = X.clone().detach()
            images.requires_grad = True
            model.zero_grad()
            logits = model(images)
            picked = logits[torch.arange(images.shape[0], device=logits.device), y.to(logits.device)]
            picked.backward(torch.ones_like(picked))
            saliency, _ = torch.max(torch.abs(images.grad), dim=1)
            return saliency
        ''',
        "compute_gradcam": '''
            activations, gradients = [], []
            flags = {m: m.inplace for m in model.modules() if isinstance(m, nn.ReLU)}
            for m in flags:
                m.inplace = False

            def save_output(mod, inp, out):
                activations.append(out)
                out.register_hook(gradients.append)

            hook = layer.register_forward_hook(save_output)
            try:
                x = X.detach().clone().requires_grad_(True)
                logits = model(x)
                chosen = logits[torch.arange(len(logits), device=logits.device), y.to(logits.device)]
                chosen.sum().backward()
            finally:
                hook.remove()
                for m, flag in flags.items():
                    m.inplace = flag
            feats = activations[0].detach()
            weights = gradients[0].mean(dim=(2, 3))
            heat = torch.relu(torch.einsum("nk,nkhw->nhw", weights, feats))
            heat = F.interpolate(heat[:, None], size=(X.shape[2], X.shape[3]), mode="bilinear",
                                 align_corners=False)[:, 0]
            top = heat.flatten(1).max(dim=1).values.view(-1, 1, 1)
            safe_top = torch.where(top > 0, top, torch.ones_like(top))
            return torch.where(top > 0, heat / safe_top, torch.zeros_like(heat))
        ''',
        "make_fooling_image": '''
            img = X.clone().detach()
            for _ in range(max_iter):
                img.requires_grad_(True)
                out = model(img)
                if out.argmax(1).item() == target_y:
                    return img.detach()
                model.zero_grad()
                out[0, target_y].backward()
                with torch.no_grad():
                    step = img.grad / img.grad.norm()
                    img = img + learning_rate * step
            img = img.detach()
            if model(img).argmax(1).item() == target_y:
                return img
            raise RuntimeError(f"make_fooling_image: no success after {max_iter} iterations")
        ''',
        "class_visualization_update_step": '''
            img.requires_grad_(True)
            score = model(img)[0, target_y]
            objective = score - l2_reg * img.pow(2).sum()
            objective.backward()
            with torch.no_grad():
                img.add_(learning_rate * img.grad / img.grad.norm())
                img.grad = None
            img.requires_grad_(False)
        ''',
    },
    "b": {
        "compute_saliency_maps": '''
            inputs = X.detach().requires_grad_()
            out = model(inputs)
            one_hot = F.one_hot(y.to(out.device), num_classes=out.shape[1]).to(out.dtype)
            target = (out * one_hot).sum()
            gradient = torch.autograd.grad(target, inputs)[0]
            return gradient.abs().max(dim=1).values
        ''',
        "compute_gradcam": '''
            relu_modules = [r for r in model.modules() if type(r) is nn.ReLU]
            saved_flags = [r.inplace for r in relu_modules]
            captured = {}
            handle = layer.register_forward_hook(lambda module, args, output: captured.update(feature=output))
            try:
                for r in relu_modules:
                    r.inplace = False
                inp = X.detach().requires_grad_()
                out = model(inp)
                one_hot = F.one_hot(y.to(out.device), out.shape[1]).to(out.dtype)
                grads = torch.autograd.grad((out * one_hot).sum(), captured["feature"])[0]
            finally:
                handle.remove()
                for r, f in zip(relu_modules, saved_flags):
                    r.inplace = f
            fmap = captured["feature"].detach()
            pooled = grads.sum(dim=(2, 3), keepdim=True) / (grads.shape[2] * grads.shape[3])
            cam = (pooled * fmap).sum(dim=1, keepdim=True).clamp(min=0)
            cam = F.interpolate(cam, size=X.shape[-2:], mode="bilinear", align_corners=False).squeeze(1)
            normalized = []
            for c in cam:
                biggest = c.max()
                normalized.append(c / biggest if biggest > 0 else torch.zeros_like(c))
            return torch.stack(normalized)
        ''',
        "make_fooling_image": '''
            fooled = X.detach().clone().requires_grad_(True)
            optim_steps = 0
            while True:
                logits = model(fooled)
                predicted = int(torch.argmax(logits, dim=1)[0])
                if predicted == target_y:
                    break
                if optim_steps == max_iter:
                    raise RuntimeError(f"make_fooling_image: still class {predicted} after {max_iter} steps")
                grad = torch.autograd.grad(logits[0, target_y], fooled)[0]
                fooled = (fooled.detach() + learning_rate * grad / torch.linalg.vector_norm(grad)).requires_grad_(True)
                optim_steps += 1
            return fooled.detach()
        ''',
        "class_visualization_update_step": '''
            probe = img.clone().requires_grad_()
            penalty = torch.sum(probe ** 2) * l2_reg
            value = model(probe).squeeze(0)[target_y] - penalty
            grad = torch.autograd.grad(value, probe)[0]
            with torch.no_grad():
                img.copy_(img + learning_rate * grad / torch.sqrt(torch.sum(grad * grad)))
        ''',
    },
    "c": {
        "compute_saliency_maps": '''
            maps = []
            for i in range(X.shape[0]):
                xi = X[i:i + 1].detach().clone().requires_grad_(True)
                s = model(xi)[0, int(y[i])]
                g, = torch.autograd.grad(s, xi)
                maps.append(g[0].abs().amax(dim=0))
            return torch.stack(maps)
        ''',
        "make_fooling_image": '''
            current = X.detach().clone()
            steps_left = max_iter
            while True:
                current.requires_grad_(True)
                prediction_scores = model(current)
                if prediction_scores[0].argmax().item() == target_y:
                    return current.detach()
                if steps_left == 0:
                    raise RuntimeError("make_fooling_image: max_iter reached without fooling the model")
                loss = -prediction_scores[0][target_y]
                loss.backward()
                direction = current.grad.detach()
                current = current.detach() - learning_rate * direction / direction.norm()
                steps_left -= 1
        ''',
    },
}

#: Written answers in the students' own words (for the markdown table).
OWN_WRITTEN_ANSWER = ("Each window needs its own forward pass, plus one pass for the unoccluded image, so the count "
                      "grows with the number of window positions along both axes. Removing a patch is a large "
                      "change, so occlusion notices effects that a gradient taken at one point cannot see.")


def reference_bodies(source: nbformat.NotebookNode) -> dict[str, str]:
    """``grade_id -> the reference solution's body`` (dedented), for every code answer of ``source``."""
    bodies = {}
    for cell in source.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("solution") and not meta.get("grade"):
            match = _REGION.search(cell.source)
            if match:
                bodies[meta["grade_id"]] = textwrap.dedent(match.group(2))
    return bodies


def answer_source(source: nbformat.NotebookNode, grade_id: str, body: str) -> str:
    """The answer cell ``grade_id`` of ``source`` with its solution region replaced by ``body``."""
    for cell in source.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            match = _REGION.search(cell.source)
            if match is None:
                raise ValueError(f"answer cell '{grade_id}' has no solution region")
            new_body = textwrap.indent(textwrap.dedent(body).strip("\n"), match.group(1)) + "\n"
            return cell.source[: match.start()] + new_body + cell.source[match.end():]
    raise KeyError(f"no answer cell '{grade_id}'")


def submission(source: nbformat.NotebookNode, release: nbformat.NotebookNode, bodies: dict[str, str],
               written: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """The release with the answer cells in ``bodies`` filled in; the others keep their stubs.

    Args:
        bodies: ``grade_id -> function body`` of code answers.
        written: ``grade_id -> text`` of markdown answers (the others keep ``YOUR ANSWER HERE``).
    """
    nb = correct_submission(source, release)
    answer_ids = [c.metadata["nbgrader"]["grade_id"] for c in release.cells
                  if c.metadata.get("nbgrader", {}).get("solution")]
    for grade_id in answer_ids:
        if grade_id in bodies:
            nb = with_answer_body(nb, source, grade_id, bodies[grade_id])
        else:
            nb = with_one_answer_blank(nb, release, grade_id)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if written and grade_id in written:
            cell.source = written[grade_id]
    return copy.deepcopy(nb)


def rename_locals(body: str, mapping: dict[str, str]) -> str:
    """``body`` with the names in ``mapping`` renamed, except as attributes (``x.name``) or keywords (``f(name=1)``)."""
    for old, new in mapping.items():
        body = re.sub(rf"(?<![\w.]){re.escape(old)}(?!\w)", new, body)
        body = re.sub(rf"([(,]\s*){re.escape(new)}(?==[^=])", rf"\g<1>{old}", body)
    return body


def parameters(source: nbformat.NotebookNode, grade_id: str) -> set[str]:
    """The parameter names of the function that answer cell ``grade_id`` defines."""
    tree = ast.parse(answer_source(source, grade_id, "pass"))
    return {a.arg for node in tree.body if isinstance(node, ast.FunctionDef)
            for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)}


def local_names(body: str) -> list[str]:
    """Names that ``body`` assigns (targets of ``=``, ``for``, ``with ... as``, nested ``def``), sorted."""
    tree = ast.parse(textwrap.dedent(body))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
    return sorted(names)


def nested_functions_first(body: str) -> str:
    """``body`` with its top-level nested ``def`` blocks moved to the beginning (a reordering)."""
    body = textwrap.dedent(body).strip("\n") + "\n"
    tree = ast.parse(body)
    lines = body.splitlines()
    defs, rest, taken = [], [], set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            span = range(node.lineno - 1 - len(node.decorator_list), node.end_lineno)
            defs.append("\n".join(lines[i] for i in span))
            taken.update(span)
    rest = [line for i, line in enumerate(lines) if i not in taken]
    return "\n\n".join([*defs, "\n".join(rest).strip("\n")]) + "\n"


def recomment(body: str, seed: int = 0) -> str:
    """``body`` without its comments, with a different comment above some statements."""
    rng = random.Random(seed)
    phrases = ["step", "now the main part", "compute it", "as in the lecture", "careful with shapes", "done"]
    out = []
    for line in textwrap.dedent(body).splitlines():
        code = _strip_comment(line)
        if not code.strip():
            if not line.strip():
                out.append("")
            continue
        if rng.random() < 0.3:
            indent = code[: len(code) - len(code.lstrip())]
            out.append(f"{indent}# {rng.choice(phrases)}")
        out.append(code.rstrip())
    return "\n".join(out) + "\n"


def _strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (a ``#`` inside a string is kept)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#":
            return line[:i]
    return line


def disguise(body: str, seed: int, keep: set[str] = frozenset()) -> str:
    """A copy as a student would hide it: locals renamed, nested functions first, other comments.

    Args:
        keep: names not to rename (the function's parameters, which the signature fixes).
    """
    rng = random.Random(seed)
    names = [n for n in local_names(body) if (len(n) > 1 or n in "xgm") and n not in keep]
    mapping = {n: f"{n}_{rng.choice(['v', 'tmp', 'val', 'my'])}" for n in names}
    return recomment(nested_functions_first(rename_locals(body, mapping)), seed)
