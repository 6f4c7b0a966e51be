package measure

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// The benchmarks that build network namespaces (clusterbench, netbench)
// run in several roles from one executable: the parent builds the
// namespaces and cleans up, and re-executes itself inside them with
// -role and the flags it was given.

// debianPackage names the package that provides a tool, for the hint in
// Preflight's error.
var debianPackage = map[string]string{
	"ip":      "iproute2",
	"nft":     "nftables",
	"nsenter": "util-linux",
	"busybox": "busybox-static",
}

// Preflight checks that the program runs as root (why says what for) and
// finds each of tools on the PATH.
func Preflight(why string, tools ...string) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: " + why)
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if pkg, ok := debianPackage[tool]; ok {
				return fmt.Errorf("needs %s (apt-get install -y %s)", tool, pkg)
			}
			return fmt.Errorf("needs %s on the PATH", tool)
		}
	}
	return nil
}

// AbsPathFlags makes the named flags of flag.CommandLine absolute paths
// (those that are set to anything), so that the roles agree on them
// whatever directory each runs in.
func AbsPathFlags(names ...string) error {
	for _, name := range names {
		f := flag.Lookup(name)
		if f == nil {
			return fmt.Errorf("no flag -%s", name)
		}
		if f.Value.String() == "" {
			continue
		}
		abs, err := filepath.Abs(f.Value.String())
		if err != nil {
			return err
		}
		if err := f.Value.Set(abs); err != nil {
			return err
		}
	}
	return nil
}

// RoleArgs returns the arguments that run this executable again in role:
// -role=role and every other flag of flag.CommandLine as it is set now.
func RoleArgs(role string) []string {
	args := []string{"-role=" + role}
	flag.VisitAll(func(f *flag.Flag) {
		if f.Name != "role" {
			args = append(args, "-"+f.Name+"="+f.Value.String())
		}
	})
	return args
}
