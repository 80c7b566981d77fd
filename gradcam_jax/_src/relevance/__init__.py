"""Layer-wise relevance propagation: zennit's rules (`rules`), its composites (`composites`), and the
model run whose gradient is the relevance (`propagate`). The methods are `methods.lrp` (and the
transformer variants `methods.attn_lrp`, `methods.cp_lrp`)."""
