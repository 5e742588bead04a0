package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const replicationUser = "streaming_replica"

// connect opens a session as postgres over the pod's unix socket.
func (s *server) connect(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=5432 user=postgres dbname=postgres sslmode=disable", s.run))
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// primaryAt checks that host (the -rw Service) leads to a primary now, as
// the superuser over the network, the way pg_rewind and pg_basebackup
// will reach it.
// With checkpoint it also makes the primary checkpoint, for pg_rewind: it
// reads the source's timeline from its control file, which names the new
// timeline only after the first checkpoint that follows a promotion;
// before that it finds "source and target cluster are on the same
// timeline" and rewinds nothing, and the old primary's standby then
// cannot follow (the new timeline forked before its WAL ends).
func primaryAt(parent context.Context, host string, cr credentials, checkpoint bool) error {
	ctx, cancel := context.WithTimeout(parent, 3*time.Second)
	defer cancel()
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=5432 user=postgres dbname=postgres sslmode=prefer connect_timeout=3", host))
	if err != nil {
		return err
	}
	cfg.Password = cr.superuser
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("waiting for the primary at %s: %w", host, err)
	}
	defer c.Close(context.Background())
	var recovery bool
	if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&recovery); err != nil {
		return fmt.Errorf("waiting for the primary at %s: %w", host, err)
	}
	if recovery {
		return fmt.Errorf("waiting for the primary at %s: it leads to a replica still", host)
	}
	if checkpoint {
		// Its own deadline: a checkpoint may write a while.
		ctx, cancel := context.WithTimeout(parent, time.Minute)
		defer cancel()
		if _, err := c.Exec(ctx, "CHECKPOINT"); err != nil {
			return fmt.Errorf("checkpoint on the primary at %s: %w", host, err)
		}
	}
	return nil
}

// observation is what postgres says of itself.
type observation struct {
	InRecovery     bool
	Timeline       int64
	ReceivedLSN    string // replica: last received; primary: current write position
	ReplayedLSN    string
	Streaming      bool     // replica: its WAL receiver is connected
	Standbys       []string // primary: application names streaming from it
	PendingRestart []string
}

func (s *server) observe(ctx context.Context) (observation, error) {
	var o observation
	c, err := s.connect(ctx)
	if err != nil {
		return o, err
	}
	defer c.Close(context.Background())
	if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&o.InRecovery); err != nil {
		return o, err
	}
	if o.InRecovery {
		var recv, replay *string
		if err := c.QueryRow(ctx, "SELECT pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text").Scan(&recv, &replay); err != nil {
			return o, err
		}
		o.ReceivedLSN, o.ReplayedLSN = deref(recv), deref(replay)
		var tli *int64
		_ = c.QueryRow(ctx, "SELECT received_tli::bigint FROM pg_stat_wal_receiver WHERE status = 'streaming'").Scan(&tli)
		o.Streaming = tli != nil
		if tli == nil {
			_ = c.QueryRow(ctx, "SELECT timeline_id::bigint FROM pg_control_checkpoint()").Scan(&tli)
		}
		if tli != nil {
			o.Timeline = *tli
		}
		if o.ReceivedLSN == "" {
			o.ReceivedLSN = o.ReplayedLSN
		}
	} else {
		var wal string
		if err := c.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text, pg_walfile_name(pg_current_wal_lsn())").Scan(&o.ReceivedLSN, &wal); err != nil {
			return o, err
		}
		o.ReplayedLSN = o.ReceivedLSN
		fmt.Sscanf(wal[:8], "%x", &o.Timeline)
		rows, err := c.Query(ctx, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' ORDER BY 1")
		if err != nil {
			return o, err
		}
		o.Standbys, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return o, err
		}
	}
	rows, err := c.Query(ctx, "SELECT name FROM pg_settings WHERE pending_restart ORDER BY 1")
	if err != nil {
		return o, err
	}
	o.PendingRestart, err = pgx.CollectRows(rows, pgx.RowTo[string])
	return o, err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// promote ends recovery and waits for it.
func (s *server) promote(ctx context.Context) error {
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	var ok bool
	if err := c.QueryRow(ctx, "SELECT pg_promote(true, 30)").Scan(&ok); err != nil {
		return fmt.Errorf("pg_promote: %w", err)
	}
	if !ok {
		return fmt.Errorf("pg_promote: not promoted within 30 s")
	}
	return nil
}

// reload makes postgres read its configuration again.
func (s *server) reload(ctx context.Context) error {
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, "SELECT pg_reload_conf()")
	return err
}

// literal quotes a value for SQL where parameters cannot go (passwords
// in ALTER ROLE).
func literal(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }

func ident(v string) string { return `"` + strings.ReplaceAll(v, `"`, `""`) + `"` }

// bootstrap makes the roles and the application database, idempotently,
// and sets the passwords from the Secrets. The statements carry passwords:
// they are never logged, and errors name the step only.
func (s *server) bootstrap(ctx context.Context, cr credentials, db, owner string) error {
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	steps := []struct{ what, sql string }{
		// The agent's own writes never wait for a synchronous standby:
		// with dataDurability required, the first primary's would wait
		// for replicas that clone only once it is ready (it never
		// would be), and a new primary's for a replica to follow it.
		{"local commits", "SET synchronous_commit TO local"},
		{"superuser password", "ALTER ROLE postgres PASSWORD " + literal(cr.superuser)},
		{"replication role", fmt.Sprintf(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') THEN CREATE ROLE %s REPLICATION LOGIN; END IF; END $$`, replicationUser, replicationUser)},
		{"replication password", "ALTER ROLE " + replicationUser + " PASSWORD " + literal(cr.replication)},
	}
	if owner != "" {
		steps = append(steps,
			struct{ what, sql string }{"owner role", fmt.Sprintf(`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = %s) THEN CREATE ROLE %s LOGIN; END IF; END $$`, literal(owner), ident(owner))},
			struct{ what, sql string }{"owner password", "ALTER ROLE " + ident(owner) + " PASSWORD " + literal(cr.app)})
	}
	for _, st := range steps {
		if _, err := c.Exec(ctx, st.sql); err != nil {
			return fmt.Errorf("bootstrap %s: %s", st.what, pgCode(err))
		}
	}
	if db == "" {
		return nil
	}
	var exists bool
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if _, err := c.Exec(ctx, "CREATE DATABASE "+ident(db)+" OWNER "+ident(owner)); err != nil {
			return fmt.Errorf("create database %s: %w", db, err)
		}
	}
	return nil
}

// pgCode is an error without its statement (which may hold a password).
func pgCode(err error) string {
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) {
		return "SQLSTATE " + pe.Code
	}
	return "failed"
}

// slots makes a physical replication slot, reserving WAL at once, for
// each replica, and drops inactive slots of instances that are gone.
func (s *server) slots(ctx context.Context, want []string) error {
	c, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	rows, err := c.Query(ctx, "SELECT slot_name, active FROM pg_replication_slots WHERE slot_name LIKE 'setpoint\\_%'")
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for rows.Next() {
		var name string
		var active bool
		if err := rows.Scan(&name, &active); err != nil {
			return err
		}
		have[name] = active
	}
	rows.Close()
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w] = true
		if _, ok := have[w]; !ok {
			if _, err := c.Exec(ctx, "SELECT pg_create_physical_replication_slot($1, true)", w); err != nil {
				return fmt.Errorf("create slot %s: %w", w, err)
			}
		}
	}
	for name, active := range have {
		if !wanted[name] && !active {
			if _, err := c.Exec(ctx, "SELECT pg_drop_replication_slot($1)", name); err != nil {
				return fmt.Errorf("drop slot %s: %w", name, err)
			}
		}
	}
	return nil
}

// slotName is an instance's replication slot on the primary.
func slotName(instance string) string {
	return "setpoint_" + strings.NewReplacer("-", "_", ".", "_").Replace(instance)
}
