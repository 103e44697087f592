package lifecycle_test

import (
	"fmt"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// A pool of three workers under least_inflight: the busy worker is skipped
// while idle ones take turns.
func ExamplePool_Pick() {
	pool, err := lifecycle.NewPool(lifecycle.Config{
		Workers: []lifecycle.WorkerConfig{
			{Name: "w1", Network: "tcp", Address: "127.0.0.1:8001"},
			{Name: "w2", Network: "tcp", Address: "127.0.0.1:8002"},
			{Name: "w3", Network: "unix", Address: "/run/app/w3.sock"},
		},
		Policy:       lifecycle.LeastInFlight,
		InitialState: lifecycle.StateUp,
	})
	if err != nil {
		panic(err)
	}
	pool.Workers()[1].AddInFlight(1) // w2 is busy with a long request
	for i := 0; i < 4; i++ {
		fmt.Print(pool.Pick().Name, " ")
	}
	fmt.Println()
	// Output: w3 w1 w3 w1
}
