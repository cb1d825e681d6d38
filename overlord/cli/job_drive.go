package cli

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/job"
)

// jobDriveCmd is the hidden command an async job's detached driver runs.
func (a *App) jobDriveCmd() *cobra.Command {
	var lockFD int
	cmd := &cobra.Command{
		Use:    "drive JOB",
		Short:  "Drive an async job to FINISHED (started by call --async)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := a.overlord()
			o.Logger = slog.New(slog.NewTextHandler(a.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("component", "driver")
			var lock job.Lock
			if lockFD > 0 {
				lock = job.NewFileLock(os.NewFile(uintptr(lockFD), "driver lock"))
			}
			return o.Drive(cmd.Context(), args[0], lock)
		},
	}
	cmd.Flags().IntVar(&lockFD, "lock-fd", 0, "file descriptor of the job's driver lock, already held")
	return cmd
}
