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
            let again = GradMode.$enabled.withValue(true) {
                Profiler.measure(.recompute, .backward) { body(x, true) }
            }
            again.backward(seed: g)
            if let dx = x.grad {
                if self.grad == nil { self.grad = dx } else { withExtendedLifetime(dx) { self.accumulateGrad(adding: dx.pointer) } }
            }
        }
    }
}
