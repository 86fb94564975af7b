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
// variable, PUSHRELAY_ and the flag's name in upper case with '-' as '_'.
// A flag given on the command line wins over its variable.
type flagSet struct {
	*flag.FlagSet
	synopsis string
}

func newFlagSet(name, synopsis string, stderr io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet("pushrelay "+name, flag.ContinueOnError), synopsis: synopsis}
	fs.SetOutput(stderr)
	fs.Usage = func() { fs.printUsage(stderr) }
	return fs
}

// envName is the environment variable behind a flag.
func envName(flagName string) string {
	return "PUSHRELAY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse parses args, then fills unset flags from the environment. It
// returns flag.ErrHelp for --help, having printed the usage to stdout.
func (fs *flagSet) parse(args []string, stdout io.Writer) error {
	// Parse quietly: the caller prints one clear line for a bad flag, and
	// --help goes to stdout.
	fs.SetOutput(io.Discard)
	usage := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = usage
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
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("invalid value %q for %s: %v", v, envName(f.Name), err)
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
		fmt.Fprintf(w, "  --%s%s\n      %s\n      default %s; env %s\n", f.Name, name, usage, def, envName(f.Name))
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
