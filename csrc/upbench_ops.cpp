// Schema of the upbench ops. Device kernels live in cpu/ and cuda/; autograd and fake (meta)
// implementations are registered from Python (upbench/_op_registrations.py) after the library loads.
//
// Shared convention: output pixel (i, j) of a 2H x 2W map reads the K x K window of the H x W map
// centred on its parent (i / 2, j / 2); window index k = ky * K + kx has offset (ky - K/2, kx - K/2);
// a neighbour outside the map is a zero that is multiplied in, as zero padding is: it adds nothing to
// finite values and NaN to a NaN or Inf factor (0 * Inf = NaN), so both paths propagate NaN and Inf alike.
#include <torch/library.h>

TORCH_LIBRARY(upbench, m) {
  // logits[n, k, i, j] = <query[n, :, i, j], key[n, :, window k of (i/2, j/2)]>
  m.def("local_similarity(Tensor query, Tensor key, int K) -> Tensor");
  m.def("local_similarity_backward(Tensor grad, Tensor query, Tensor key, int K) -> (Tensor, Tensor)");
  // out[n, c, i, j] = sum_k weights[n, k, i, j] * x[n, c, window k of (i/2, j/2)]
  m.def("dynamic_assembly(Tensor weights, Tensor x, int K) -> Tensor");
  m.def("dynamic_assembly_backward(Tensor grad, Tensor weights, Tensor x, int K) -> (Tensor, Tensor)");
  // dynamic_assembly(softmax_k(local_similarity(query, key)), value) without materialising the kernel
  m.def("sapa_fused(Tensor query, Tensor key, Tensor value, int K) -> Tensor");
  m.def(
      "sapa_fused_backward(Tensor grad, Tensor query, Tensor key, Tensor value, int K) -> "
      "(Tensor, Tensor, Tensor)");
  // Same-resolution windows with a reflected border (FeatUp's JBU): pixel (i, j) of an h x w map reads the
  // K x K window of an h x w map centred on (i, j) itself, a neighbour outside the map being its mirror
  // image (reflect padding, which needs h and w above K/2).
  // logits[n, k, i, j] = <query[n, :, i, j], key[n, :, reflected window k of (i, j)]>
  m.def("reflect_similarity(Tensor query, Tensor key, int K) -> Tensor");
  m.def("reflect_similarity_backward(Tensor grad, Tensor query, Tensor key, int K) -> (Tensor, Tensor)");
  // out[n, c, i, j] = sum_k weights[n, k, i, j] * x[n, c, reflected window k of (i, j)]
  m.def("reflect_assembly(Tensor weights, Tensor x, int K) -> Tensor");
  m.def("reflect_assembly_backward(Tensor grad, Tensor weights, Tensor x, int K) -> (Tensor, Tensor)");
  // Linear(LayerNorm over channels) of each pixel of an NCHW map: x (N, C, H, W) -> (N, d, H, W), with
  // LayerNorm's gamma, beta (C) and eps and the Linear's weight (d, C) and bias (d)
  m.def("norm_linear(Tensor x, Tensor gamma, Tensor beta, Tensor weight, Tensor bias, float eps) -> Tensor");
  // -> (grad_x, grad_gamma, grad_beta, grad_weight, grad_bias); the bias itself is not needed
  m.def(
      "norm_linear_backward(Tensor grad, Tensor x, Tensor gamma, Tensor beta, Tensor weight, float eps) -> "
      "(Tensor, Tensor, Tensor, Tensor, Tensor)");
}
