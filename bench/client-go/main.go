// Command client-go-bench measures the real client-go indexer and shared informer
// (k8s.io/client-go/tools/cache) on the workload of the Rust cache benchmarks, and builds the
// side-by-side table and chart from both sides' results.
//
//	client-go-bench run [-quick] [-sizes 10000,100000] [-cases regexp] [-out results.jsonl]
//	client-go-bench report -out-md table.md -out-csv table.csv -plot chart.svg results/*.jsonl
//
// bench/compare runs both, alternating with the Rust side.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: client-go-bench run|report [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = runCmd(os.Args[2:])
	case "report":
		err = reportCmd(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: run or report", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "client-go-bench:", err)
		os.Exit(1)
	}
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad size %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func runCmd(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "short measurements")
	sizes := fs.String("sizes", "10000,100000", "object counts of the indexer cases")
	informerObjects := fs.Int("informer-objects", InformerObjects, "objects of the informer cases")
	only := fs.String("cases", "", "run only the cases whose name matches this regular expression")
	out := fs.String("out", "", "append the results, one JSON line each, to this file (default: stdout)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ns, err := parseSizes(*sizes)
	if err != nil {
		return err
	}
	filter, err := regexp.Compile(*only)
	if err != nil {
		return err
	}
	settings := FullSettings
	if *quick {
		settings = QuickSettings
	}
	var w io.Writer = os.Stdout
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	return Run(w, os.Stderr, settings, ns, *informerObjects, filter)
}

// Run measures every case matching filter and writes one JSON line per result to w, progress to
// log.
func Run(w, log io.Writer, s Settings, sizes []int, informerObjects int, filter *regexp.Regexp) error {
	enc := json.NewEncoder(w)
	emit := func(r Result) error {
		r.Side = "client-go"
		fmt.Fprintf(log, "client-go %-24s %7d %12.1f %s\n", r.Case, r.N, r.Value, r.Unit)
		return enc.Encode(r)
	}
	for _, n := range sizes {
		d := newData(n)
		if err := emit(Result{Case: "workload", N: n, Unit: "objects", Value: float64(n), Fingerprint: d.fingerprint()}); err != nil {
			return err
		}
		for _, c := range append(append([]Case{}, Cases...), MemoryCases...) {
			if !filter.MatchString(c.Name) {
				continue
			}
			v, err := c.Run(d, s)
			if err != nil {
				return fmt.Errorf("%s at %d: %w", c.Name, n, err)
			}
			if err := emit(Result{Case: c.Name, N: n, Unit: c.Unit, Value: v}); err != nil {
				return err
			}
		}
		if filter.MatchString("memory_objects") {
			if err := emit(Result{Case: "memory_objects", N: n, Unit: "bytes/object", Value: objectBytes(n)}); err != nil {
				return err
			}
		}
	}
	d := &Data{N: informerObjects}
	for _, c := range InformerCases {
		if !filter.MatchString(c.Name) {
			continue
		}
		v, err := c.Run(d, s)
		if err != nil {
			return fmt.Errorf("%s at %d: %w", c.Name, informerObjects, err)
		}
		if err := emit(Result{Case: c.Name, N: informerObjects, Unit: c.Unit, Value: v}); err != nil {
			return err
		}
	}
	return nil
}
