"""One graph rewrite for the exported encoder, as an onnxscript rewrite rule: ONNX's Attention op on [batch,
seq, hidden] instead of [batch, heads, seq, head_dim]. PyTorch's exporter writes scaled_dot_product_attention
as Attention between a reshape + transpose per input and a transpose + reshape after; the op takes the 3-D
form itself (q_num_heads, kv_num_heads), and ONNX Runtime then runs no Transpose kernels
(benchmarks/onnx_levers.py). Neither onnxscript's nor ONNX Runtime's fusions do this for the standard op."""

from __future__ import annotations

from onnx_ir import Model
from onnxscript.rewriter import pattern


class Attention3D(pattern.RewriteRuleClassBase):
    """Reshape -> Transpose -> Attention -> Transpose -> Reshape, matched only where every shape says it is the
    split into heads and back; anything else is left as exported."""

    def pattern(self, op, q, k, v, mask, q_shape, k_shape, v_shape, out_shape):
        def heads(x, shape):
            return op.Transpose(op.Reshape(x, shape, _allow_other_attributes=True), perm=[0, 2, 1, 3])

        att = op.Attention(
            heads(q, q_shape),
            heads(k, k_shape),
            heads(v, v_shape),
            mask,
            _allow_other_attributes=True,
            _outputs=["att"],
        )
        return op.Reshape(op.Transpose(att, perm=[0, 2, 1, 3]), out_shape, _allow_other_attributes=True)

    def check(self, context, q, k, v, att, **_) -> bool:
        node = att.producer()
        split = [x.shape for x in node.inputs[:3]]
        if any(s is None or len(s) != 4 or not isinstance(s[1], int) or not isinstance(s[3], int) for s in split):
            return False
        self._heads, dim = split[0][1], split[0][3]
        same = all(s[1] == self._heads and s[3] == dim for s in split)
        flat = all(x.shape is not None and len(x.shape) == 3 and x.shape[2] == self._heads * dim for x in (q, k, v))
        return same and flat and "q_num_heads" not in node.attributes

    def rewrite(self, op, q, k, v, mask, att, **_):
        kept = {name: a.value for name, a in att.producer().attributes.items()}
        return op.Attention(q, k, v, mask, q_num_heads=self._heads, kv_num_heads=self._heads, **kept)


def attention_3d(model: Model) -> int:
    """Rewrite `model` in place; the number of Attention ops rewritten."""
    return pattern.RewriteRuleSet([Attention3D.rule()]).apply_to_model(model)
