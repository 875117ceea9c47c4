/// Recomputation ("activation checkpointing"): a piece of the forward pass that keeps none of
/// its intermediate tensors for the backward pass, only its input, and runs again when the
/// backward pass reaches it.
extension Tensor {
    /// `body(self, false)`, recorded as one op whose backward runs `body(·, true)` again on
    /// this tensor's values with the tape on, backpropagates through that, and passes the
    /// gradient on to `self` and to `parameters`.
    ///
    /// `body` must compute the same function both times (the second call says it is the
    /// second, so a caller can replay its random draws) and may read only its argument,
    /// `parameters` and tensors that need no gradient. Its intermediates live only inside each
    /// call: the forward pass keeps the output, the backward pass one such piece at a time.
    public func recomputed(parameters: [Tensor], _ body: @escaping (_ x: Tensor, _ again: Bool) -> Tensor) -> Tensor {
        guard Tensor.needsGrad([self] + parameters) else { return body(self, false) }
        let y = GradMode.withoutGrad { body(self, false) }
        let out = Tensor(sharing: y, shape: y.shape)
        return out.recording("recompute", .recompute, [self] + parameters) { g in
            let x = self.detached()
            x.requiresGrad = self.requiresGrad
            // Only the output's vertex is kept: no backward reads the block's output, so its
            // values go before the walk, and g, which the walk's caller drops after this, is
            // the output's gradient as it is rather than a copy.
            let root: Vertex? = GradMode.$enabled.withValue(true) {
                Profiler.measure(.recompute, .backward) {
                    let again = body(x, true)
                    precondition(again.shape == g.shape, "a recomputed body gave \(again.shape), its first run \(g.shape)")
                    return again.requiresGrad ? again.vertex : nil
                }
            }
            if let root { Tensor.backward(from: root, seed: (g, true)) }
            if let dx = x.grad {
                if self.grad == nil { self.grad = dx } else { withExtendedLifetime(dx) { self.accumulateGrad(adding: dx.pointer) } }
            }
        }
    }
}
