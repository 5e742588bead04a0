// Package testkit runs tests against a real Kubernetes control plane.
//
// One control plane is started per test binary (that is, per Go package) by
// Run from TestMain, and each test gets its own namespace from
// Environment.Namespace, so tests in a package can run in parallel without
// seeing each other's objects. Waiting is done with Eventually, which polls
// with a deadline and fails with the last reason the condition gave; tests
// never sleep to synchronise.
//
//	func TestMain(m *testing.M) { os.Exit(testkit.Run(m)) }
//
//	func TestThing(t *testing.T) {
//		env := testkit.Env(t)
//		ns := env.Namespace(t)
//		...
//		testkit.Eventually(t, 30*time.Second, func() error { ... })
//	}
//
// When the control plane binaries are missing, Run fails the whole package
// with a message that says to run `make tools`: a missing dependency is a
// failure, not a skip.
//
// To look into a failure: SETPOINT_TEST_LOG=debug (LogEnv) prints the
// logs of the operators a test runs, and SETPOINT_TEST_DIR=<dir> (DirEnv)
// keeps each package's control plane, with every component's log, in a
// new directory under dir.
package testkit
