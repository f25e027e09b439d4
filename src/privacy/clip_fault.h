/* Fault injection into the clipping engine, for the audit's control test only
 * (tests/test_audit_fault.c): a deliberately broken engine that the privacy audit must catch. Never set
 * outside that test; no command or option reaches it. */
#ifndef DP_PRIVACY_CLIP_FAULT_H
#define DP_PRIVACY_CLIP_FAULT_H

/* Non-zero: every per-example clip factor is 1 (gradients are not clipped, while the noise is still
 * calibrated to the clipping norm), so the accountant's epsilon no longer holds. */
extern int dp_clip_fault_skip_clipping;

#endif
