package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlordhq/overlord/overlord"
)

// tokenJSON is the JSON form of a token: its secret only when created.
type tokenJSON struct {
	Token         string    `json:"token,omitempty"`
	ID            string    `json:"id"`
	CAFingerprint string    `json:"ca_fingerprint,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	Uses          int       `json:"uses"`
	Used          int       `json:"used"`
	State         string    `json:"state"`
}

func (a *App) tokenCreateCmd() *cobra.Command {
	var (
		ttl    time.Duration
		uses   int
		format string
	)
	cmd := &cobra.Command{
		Use:   "create [--ttl DUR] [--uses N]",
		Short: "Make a join token that has minions' requests signed at once",
		Long: `Make a join token and print it on the last line. A minion that enrols with
it ('minion enroll --token T') is signed at once and registered, up to
--uses times, until --ttl has passed. The token also carries the CA's
fingerprint, by which the minion verifies the enrolment endpoint.

overlord.db keeps only a hash of the token's secret: the token cannot be
shown again. Anyone who has it can enrol minions until it expires or is
used up; 'overlord token delete ID' ends it sooner.`,
		Example: `  overlord token create
  overlord token create --ttl 1h --uses 20
  TOKEN=$(overlord token create | tail -n 1)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now()
			t, rec, err := a.overlord().CreateToken(ttl, uses, now)
			if err != nil {
				return err
			}
			if format == formatJSON {
				return writeJSON(a.Stdout, tokenJSON{Token: t.String(), ID: t.ID, CAFingerprint: t.CAFingerprint,
					CreatedAt: rec.CreatedAt, ExpiresAt: rec.ExpiresAt, Uses: rec.Uses, State: rec.State(now)})
			}
			fmt.Fprintf(a.Stdout, "token %s: %d enrolment%s until %s (%s)\n", t.ID, uses, plural(uses),
				rec.ExpiresAt.Local().Format(time.DateTime), ttl)
			fmt.Fprintf(a.Stdout, "CA fingerprint %s\n", t.CAFingerprint)
			fmt.Fprintf(a.Stdout, "on the minion: minion enroll --server HOST:PORT --name NAME --addr HOST:PORT --token TOKEN\n")
			fmt.Fprintln(a.Stdout, t.String())
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", overlord.DefaultTokenTTL, "how long the token is valid")
	cmd.Flags().IntVar(&uses, "uses", 1, "how many minions may enrol with it")
	outputFlag(cmd, &format, formatText, formatJSON)
	return cmd
}
