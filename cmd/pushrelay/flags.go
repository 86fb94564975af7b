package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// flagSet wraps flag.FlagSet so that every flag also reads an environment
// variable. A flag given on the command line wins over its variable.
//
// One name, one meaning: serve's flags read PUSHRELAY_ and the flag's name
// in upper case with '-' as '_' (PUSHRELAY_LISTEN), and so do the flags
// other commands share with serve in the same meaning (share: --ingress,
// --framing). Every other flag's variable also names its command
// (PUSHRELAY_LOADGEN_CONNS, PUSHRELAY_BENCH_IDLE_CONNS), so a variable
// exported for one command never changes another.
type flagSet struct {
	*flag.FlagSet
	synopsis  string
	envPrefix string          // PUSHRELAY_ and the command's name, for unshared flags
	shared    map[string]bool // flags that read serve's variable
}

// flagSetMade, if set (by tests), sees every flag set a command makes.
var flagSetMade func(*flagSet)

func newFlagSet(name, synopsis string, stderr io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet("pushrelay "+name, flag.ContinueOnError), synopsis: synopsis, envPrefix: "PUSHRELAY_"}
	if name != "serve" {
		fs.envPrefix = envName(name) + "_"
	}
	fs.SetOutput(stderr)
	fs.Usage = func() { fs.printUsage(stderr) }
	if flagSetMade != nil {
		flagSetMade(fs)
	}
	return fs
}

// share makes the named flags read serve's variable for the flag of the
// same name: only for flags that mean exactly what serve's flag means.
func (fs *flagSet) share(names ...string) {
	if fs.shared == nil {
		fs.shared = map[string]bool{}
	}
	for _, n := range names {
		fs.shared[n] = true
	}
}

// envName is serve's environment variable for a flag (or a command's
// prefix, for a command name).
func envName(flagName string) string {
	return "PUSHRELAY_" + strings.ToUpper(strings.NewReplacer("-", "_", " ", "_").Replace(flagName))
}

// env is the environment variable behind one of fs's flags.
func (fs *flagSet) env(flagName string) string {
	if fs.shared[flagName] {
		return envName(flagName)
	}
	return fs.envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses args quietly: the caller prints one clear line for a
// bad flag (with the nearest flag name when one is close), and --help
// goes to stdout.
func (fs *flagSet) parseFlags(args []string) error {
	fs.SetOutput(io.Discard)
	usage := fs.Usage
	fs.Usage = func() {}
	err := fs.FlagSet.Parse(args)
	fs.Usage = usage
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	const undefined = "flag provided but not defined: -"
	if name, ok := strings.CutPrefix(err.Error(), undefined); ok {
		if near := fs.nearest(name); near != "" {
			return fmt.Errorf("%w (did you mean --%s?)", err, near)
		}
	}
	return err
}

// nearest returns the flag name closest to name, if one is close enough to
// be a typo (an edit distance of at most a third of its length, at least 1)
// or name is the start of exactly one flag's name.
func (fs *flagSet) nearest(name string) string {
	name = strings.TrimLeft(name, "-")
	var starts []string
	fs.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Name, name) {
			starts = append(starts, f.Name)
		}
	})
	if len(starts) == 1 {
		return starts[0]
	}
	best, bestD := "", max(1, len(name)/3)+1
	fs.VisitAll(func(f *flag.Flag) {
		if d := editDistance(name, f.Name); d < bestD {
			best, bestD = f.Name, d
		}
	})
	return best
}

// editDistance is the edit distance between a and b, a swap of two
// neighbouring letters counting as one edit (optimal string alignment).
func editDistance(a, b string) int {
	rows := make([][]int, len(a)+1)
	for i := range rows {
		rows[i] = make([]int, len(b)+1)
		rows[i][0] = i
	}
	for j := range rows[0] {
		rows[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			rows[i][j] = min(rows[i-1][j]+1, rows[i][j-1]+1, rows[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				rows[i][j] = min(rows[i][j], rows[i-2][j-2]+1)
			}
		}
	}
	return rows[len(a)][len(b)]
}

// parseOrExit parses args as parse does. When it returns false the command
// ends at once with the code it returns: 0 after --help, exitUsage after an
// error, which it has written to stderr as "pushrelay NAME: error".
func (fs *flagSet) parseOrExit(args []string, stdout, stderr io.Writer) (int, bool) {
	if err := fs.parse(args, stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return exitUsage, false
	}
	return exitOK, true
}

// parse parses args, then fills unset flags from the environment. It
// returns flag.ErrHelp for --help, having printed the usage to stdout.
func (fs *flagSet) parse(args []string, stdout io.Writer) error {
	err := fs.parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.printUsage(stdout)
		return err
	}
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || envErr != nil {
			return
		}
		if v, ok := os.LookupEnv(fs.env(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("invalid value %q for %s: %v", v, fs.env(f.Name), err)
			}
		}
	})
	if envErr != nil {
		return envErr
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func (fs *flagSet) printUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s [flags]\n\n%s\n\nFlags (each also read from the environment variable shown):\n", fs.Name(), fs.synopsis)
	fs.VisitAll(func(f *flag.Flag) {
		name, usage := flag.UnquoteUsage(f)
		if name != "" {
			name = " " + name
		}
		def := f.DefValue
		if def == "" {
			def = `""`
		}
		fmt.Fprintf(w, "  --%s%s\n      %s\n      default %s; env %s\n", f.Name, name, usage, def, fs.env(f.Name))
	})
}

// byteSize is a flag.Value for sizes: plain bytes, or with a suffix
// k/KiB (1024), m/MiB, g/GiB.
type byteSize int

func (b *byteSize) String() string { return formatBytes(int(*b)) }

func (b *byteSize) Set(s string) error {
	t := strings.TrimSpace(strings.ToLower(s))
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30}, {"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n < 0 {
		return fmt.Errorf("want a byte count such as 1024, 64KiB or 1MiB")
	}
	if n > (1<<62)/mult {
		return fmt.Errorf("too large")
	}
	*b = byteSize(n * mult)
	return nil
}

func formatBytes(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n)
}
