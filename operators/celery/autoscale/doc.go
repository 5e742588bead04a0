// Package autoscale is the CeleryCluster autoscaler's arithmetic, pure and
// clock-injected so every rule is table-tested: how many workers a
// pool's backlog asks for, and how fast the replica count may follow.
//
//   - desired = ceil(backlog / target per worker), clamped to [min, max];
//     min is at least 1 unless the pool may scale to zero, and a pool at
//     zero wakes as soon as anything waits.
//   - Scale-up is immediate (up to the step limit): waiting work is the
//     symptom being fixed.
//   - Every scale-down, not only the last step to zero (KEDA's cooldown
//     covers only 1→0: kedacore/keda #737, #6844), is stabilised: the
//     count goes down only to the highest recommendation of the window,
//     so a backlog that dips and comes back does not make workers flap.
//     Then the step limit applies.
package autoscale
