package cli

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/jobs"
	"github.com/overlordhq/overlord/overlord"
	"github.com/overlordhq/overlord/status"
)

func (a *App) storeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "store",
		Short: "Copy the store between bbolt and etcd, and verify one",
		Long: `The store holds the jobs and their entries, the registry, groups, join
tokens, the certificate ledger and the revocation list. It is a bbolt file,
the state directory's overlord.db, unless --store (or OVERLORD_STORE)
names another: PATH or bbolt:PATH for a file, etcd://HOST:2379[,HOST:2379...][/PREFIX]
for an etcd cluster (keys under /PREFIX/, default /overlord/; over TLS
with --etcd-cert, --etcd-key and --etcd-ca). See docs/ha.md.`,
	}
	cmd.AddCommand(a.storeMigrateCmd(), a.storeCheckCmd())
	return groupCommand(cmd)
}

func (a *App) storeMigrateCmd() *cobra.Command {
	var from, to string
	var force bool
	cmd := &cobra.Command{
		Use:   "migrate --from ADDRESS --to ADDRESS",
		Short: "Copy a store to another (bbolt to etcd, or back)",
		Long: `Copy every record of the store at --from into the store at --to, read in
one transaction and written in transactions small enough for etcd's
default limits. The schema version is written last: a copy cut short is
refused by every command until migrate is run again with --force.

A destination that holds anything is refused unless --force, which
deletes what it holds first. Stop 'overlord serve' and async jobs on the
source first: what is written to it during the copy may be missed.
--etcd-cert, --etcd-key and --etcd-ca apply to either address.`,
		Example: `  overlord store migrate --from bbolt:$HOME/.local/state/overlord/overlord.db --to etcd://10.0.0.5:2379
  overlord store migrate --from etcd://10.0.0.5:2379,10.0.0.6:2379 --to bbolt:/var/backups/overlord.db
  overlord store migrate --from etcd://10.0.0.5:2379/old --to etcd://10.0.0.5:2379/new --force`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" || to == "" {
				return usageError("store migrate needs --from ADDRESS and --to ADDRESS")
			}
			src, err := a.openAddress(from)
			if err != nil {
				return err
			}
			defer src.Close()
			dst, err := a.openAddress(to)
			if err != nil {
				return err
			}
			defer dst.Close()
			st, err := jobs.Copy(dst, src, force)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "copied %d jobs (%d buckets, %d keys, %d bytes) from %s to %s\n",
				st.Jobs, st.Buckets, st.Keys, st.Bytes, src.Address(), dst.Address())
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the store to copy: `ADDRESS` (PATH, bbolt:PATH or etcd://HOST:2379[,...][/PREFIX])")
	cmd.Flags().StringVar(&to, "to", "", "the store to copy to: `ADDRESS`")
	cmd.Flags().BoolVar(&force, "force", false, "replace what the destination holds")
	return cmd
}

func (a *App) storeCheckCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check [ADDRESS]",
		Short: "Verify a store: every record decodes, indexes agree, schema version",
		Long: `Read the whole store (ADDRESS, else --store or OVERLORD_STORE, else the state
directory's overlord.db) in one read transaction and check it: the schema
version is this overlord's, every record decodes, each job's summary
agrees with its entries, the index of open jobs with the jobs' states,
groups name registered minions, inventory versions have their snapshots.
It prints what is wrong, and exits 1 if anything is (2 if the store
cannot be read at all).`,
		Example: `  overlord store check
  overlord store check etcd://10.0.0.5:2379
  OVERLORD_STORE=etcd://10.0.0.5:2379 overlord store check`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s := a.store
			if len(args) == 1 {
				var err error
				if s, err = a.openAddress(args[0]); err != nil {
					return err
				}
				defer s.Close()
			}
			problems, err := s.Check()
			if err != nil {
				return err
			}
			for _, p := range problems {
				fmt.Fprintln(a.Stdout, p)
			}
			if len(problems) > 0 {
				return &ExitError{Code: status.ExitFailed, Err: fmt.Errorf("%s: %d problems", s.Address(), len(problems))}
			}
			fmt.Fprintf(a.Stdout, "%s: ok (schema version %d)\n", s.Address(), jobs.SchemaVersion)
			return nil
		},
	}
	return cmd
}

// openAddress opens the store at addr with the global etcd TLS flags.
func (a *App) openAddress(addr string) (*jobs.Store, error) {
	opts := a.etcdOpts
	opts.LockTimeout = a.lockTimeout
	s, err := jobs.Open(addr, filepath.Join(a.stateDir, overlord.DBFile), opts)
	if err != nil {
		return nil, &ExitError{Code: status.ExitUsage, Err: err}
	}
	return s, nil
}
