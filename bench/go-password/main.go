// Generates passwords with sethvargo/go-password (what ESO's Password generator
// uses) in a time-boxed loop and prints passwords per second as one JSON line,
// so bench/generator.ts can compare it with lib/generator on the same spec.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/sethvargo/go-password/password"
)

func main() {
	length := flag.Int("length", 42, "password length")
	digits := flag.Int("digits", 5, "number of digits")
	symbols := flag.Int("symbols", 5, "number of symbols")
	symbolCharacters := flag.String("symbol-characters", "-_$@", "symbols to draw from")
	noUpper := flag.Bool("no-upper", false, "lower-case letters only")
	allowRepeat := flag.Bool("allow-repeat", true, "allow repeated characters")
	seconds := flag.Float64("seconds", 2, "measured duration")
	warmup := flag.Float64("warmup", 0.5, "unmeasured warm-up duration")
	flag.Parse()

	gen, err := password.NewGenerator(&password.GeneratorInput{Symbols: *symbolCharacters})
	if err != nil {
		fail(err)
	}
	// The spec is validated once, like lib/generator's resolvePasswordSpec.
	first, err := gen.Generate(*length, *digits, *symbols, *noUpper, *allowRepeat)
	if err != nil {
		fail(err)
	}
	if len(first) != *length {
		fail(fmt.Errorf("expected a password of %d characters, found %d", *length, len(first)))
	}

	run := func(d time.Duration) (int, time.Duration) {
		count := 0
		sink := 0
		start := time.Now()
		deadline := start.Add(d)
		for {
			// Check the clock every 64 passwords so timing stays out of the loop's cost.
			for i := 0; i < 64; i++ {
				sink += len(gen.MustGenerate(*length, *digits, *symbols, *noUpper, *allowRepeat))
			}
			count += 64
			if now := time.Now(); !now.Before(deadline) {
				if sink != count**length {
					fail(fmt.Errorf("generated %d characters for %d passwords", sink, count))
				}
				return count, now.Sub(start)
			}
		}
	}
	run(time.Duration(*warmup * float64(time.Second)))
	count, elapsed := run(time.Duration(*seconds * float64(time.Second)))

	out, _ := json.Marshal(map[string]any{
		"library":            "github.com/sethvargo/go-password v0.3.1",
		"passwords":          count,
		"seconds":            elapsed.Seconds(),
		"passwordsPerSecond": float64(count) / elapsed.Seconds(),
	})
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "go-password bench:", err)
	os.Exit(1)
}
