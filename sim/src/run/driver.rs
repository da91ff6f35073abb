//! The migration driver: one migration from its request to its end. It
//! starts a migration (placement, route, caps, reservation), sets up the
//! connection and any site-index sync, runs the pre-copy rounds and the stop
//! rule, the stop-and-copy, the post-copy switch and push, and ends it
//! (placement and capacity updated through [`FabricState`], the owning policy
//! told). It also breaks the migrations a failed link or host cuts.

use super::*;

/// Where a migration leaves its VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fate {
    /// Running at the destination.
    AtDestination,
    /// Running at the source.
    AtSource,
    /// Gone for good (post-copy split by a link failure).
    Lost,
    /// Down with a failed host, waiting for a restart.
    Down,
}

/// What arrives at the destination when a migration's last bytes land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arrival {
    /// Device state arrived: the VM resumes at the destination in post-copy.
    Resume,
    /// The last bytes arrived: the migration is complete.
    Finish,
    /// A pre-copy round's calibrated fixed cost (acknowledgement wait,
    /// dirty-log sync) has passed: the stop rule decides.
    RoundSettled,
}


impl Sim<'_> {
    /// Starts a migration for policy `op`, or says why not. A VM that is not
    /// running is refused without a record; a refusal for want of a host or
    /// because a link of the route is down leaves a migration row (outcome
    /// `no-capacity` or `aborted-link-failure`) with nothing sent.
    pub(super) fn start_migration(&mut self, op: OperationId, req: MigrationRequest) -> Result<MigrationId, Refusal> {
        let now = self.now();
        let vm = req.vm;
        match self.state.vm_state(vm) {
            VmState::Running => {}
            VmState::Migrating(_) | VmState::Restarting { .. } => return Err(Refusal::Busy),
            VmState::Down { .. } | VmState::Lost => return Err(Refusal::NotRunning),
        }
        let src = self.state.vm_host(vm);
        if !self.state.host_usable(src) {
            return Err(Refusal::HostDown);
        }
        let placed = self.place(vm, req.to, req.settings.placer, Some(src), true);
        let dst = placed.ok();
        let src_site = self.sc.fabric.hosts[src.index()].site;
        let dst_site = match (dst, req.to) {
            (Some(h), _) | (None, Destination::Host(h)) => self.sc.fabric.hosts[h.index()].site,
            (None, Destination::Site(s)) => s,
        };
        let route = self.sc.fabric.route(src_site, dst_site).cloned().expect("routes checked when loading");
        let settings = req.settings;
        let (total, kind) = if route.hops.is_empty() {
            (self.sc.lan_bandwidth.0, CapKind::Lan)
        } else {
            let (per_stream, limit) = tcp::stream_cap(route.rtt(), route.loss, settings.tcp_window, settings.mss);
            let kind = match limit {
                tcp::TcpLimit::Window => CapKind::TcpWindow,
                tcp::TcpLimit::Loss => CapKind::TcpLoss,
                tcp::TcpLimit::None => CapKind::None,
            };
            (per_stream.0 * settings.streams as f64, kind)
        };
        let cap = match settings.max_bandwidth {
            Some(BytesPerSecond(mb)) if mb < total => (mb, CapKind::MaxBandwidth),
            _ => (total, kind),
        };
        let id = MigrationId(self.migs.len() as u32);
        let vm_spec = &self.sc.vms[vm.index()];
        let reduction = VmReduction::new(
            &settings.strategy,
            VmInputs {
                workload: &vm_spec.workload,
                has_image: vm_spec.image.is_some(),
                working_set_pages: self.dirty_models[vm.index()].working_set_pages(),
                xbzrle_cache_pages: settings.xbzrle_cache.0 / PAGE_SIZE_BYTES,
                hash: settings.hash,
                site_false_positive_rate: settings.site_index.false_positive_rate(),
                site_query: matches!(settings.site_index, SiteIndex::Query { .. }),
            },
            &self.sc.cpu_profile,
        );
        let xbzrle_cache = settings.strategy.delta.then(|| {
            XbzrleCacheModel::new(settings.xbzrle_cache.0 / PAGE_SIZE_BYTES, &self.dirty_models[vm.index()])
        });
        let mut mig = Migration {
            id,
            operation: op,
            vm,
            src,
            dst: dst.unwrap_or(src),
            dst_site,
            route,
            settings,
            cap,
            reduction: Some(Box::new(reduction)),
            xbzrle_cache,
            stage_tally: Tally::default(),
            last_stage_tally: Tally::default(),
            stage_bytes: 0.0,
            stage_extra_bytes: 0.0,
            extra_bytes: 0.0,
            tally: Tally::default(),
            phase: MigrationPhase::Setup,
            stage: Stage::Connecting,
            flow: None,
            start: now,
            stage_start: now,
            stage_pages: 0.0,
            rounds: 0,
            postcopy_pending: 0.0,
            postcopy_window_secs: None,
            postcopy_guest_speed: 1.0,
            throttle: Default::default(),
            throttle_pct_max: 0,
            paused_at: None,
            resumed_at: None,
            converged: None,
            bytes_precopy: 0.0,
            bytes_stopcopy: 0.0,
            bytes_postcopy: 0.0,
            bytes_index_sync: 0.0,
            bytes_cap_limited: 0.0,
            postcopy_faults: 0,
            postcopy_fault_wait: Nanos(0),
            outcome: None,
            end: None,
        };
        let failure = match placed {
            Err(r) => Some((r, r.refused_outcome())),
            Ok(_) if mig.route.hops.iter().any(|h| !self.state.link_up(h.link)) => {
                Some((Refusal::LinkDown, Outcome::AbortedLinkFailure))
            }
            Ok(_) => None,
        };
        if let Some((refusal, outcome)) = failure {
            mig.phase = MigrationPhase::Failed;
            mig.stage = Stage::Done;
            mig.outcome = Some(outcome);
            mig.end = Some(now);
            mig.reduction = None;
            self.migs.push(mig);
            self.migrations_ended += 1;
            self.link_bytes.push(Vec::new());
            self.own_cap_bytes.push(Vec::new());
            self.traced.push(None);
            return Err(refusal);
        }
        self.state.begin_migration(vm, id, mig.dst);
        // Connection setup: one round trip (TCP handshake).
        self.q.schedule_in(mig.route.rtt(), Event::Begin(id));
        let traced = self.sc.vms[vm.index()].trace.as_ref().map(|t| {
            Box::new(Traced {
                vm: VmTrace::clone(t),
                run: TraceRun::default(),
                sent: HashSet::new(),
                cache: DeltaCache::new(mig.settings.xbzrle_cache.0 as f64 / PAGE_SIZE_BYTES as f64),
                prepared: None,
            })
        });
        self.migs.push(mig);
        self.link_bytes.push(Vec::new());
        self.own_cap_bytes.push(Vec::new());
        self.traced.push(traced);
        Ok(id)
    }


    pub(super) fn transition(&mut self, m: MigrationId, to: MigrationPhase) {
        let mig = &mut self.migs[m.index()];
        mig.phase = mig.phase.transition(to).unwrap_or_else(|e| panic!("migration {}: {e}", m.0));
    }

    pub(super) fn begin(&mut self, m: MigrationId) {
        if self.migs[m.index()].outcome.is_some() {
            return; // failed while connecting
        }
        // dedup-site with a summary: the destination first sends a Bloom
        // filter of its resident pages (in the reverse direction).
        let mig = &self.migs[m.index()];
        if let (Some(memfabric_migration::strategy::DedupScope::Site), SiteIndex::Summary { bits_per_item }) =
            (mig.settings.strategy.dedup, mig.settings.site_index)
        {
            let src_site = self.sc.fabric.hosts[mig.src.index()].site;
            let mut pages = self.content.resident_pages(mig.vm, mig.dst_site);
            if src_site == mig.dst_site {
                pages = pages.saturating_sub(self.content_pages(mig.vm));
            }
            let bytes = (pages as f64 * bits_per_item / 8.0).ceil();
            if bytes > 0.0 {
                let reverse = self.sc.fabric.route(mig.dst_site, src_site).expect("routes are symmetric");
                let resources: Vec<usize> = reverse.hops.iter().map(|h| h.resource()).collect();
                let cap = mig.cap.0;
                let sync = FlowSpec { resources, cap, weight: 1.0, own_kind: None };
                self.attach_flow(m, Stage::IndexSync, 0.0, Tally::default(), 0, bytes, sync);
                return;
            }
        }
        self.begin_transfer(m);
    }

    /// Starts moving memory, after the connection (and any index sync).
    pub(super) fn begin_transfer(&mut self, m: MigrationId) {
        let mig = &self.migs[m.index()];
        let pages = self.vm_pages[mig.vm.index()] as f64;
        let state = self.sc.vms[mig.vm.index()].device_state.0;
        match mig.settings.mechanism {
            Mechanism::PreCopy | Mechanism::Hybrid => {
                self.transition(m, MigrationPhase::PreCopy);
                self.start_flow(m, Stage::PreCopyRound, pages, PageKind::FullCopy, 0);
            }
            Mechanism::StopAndCopy => {
                self.transition(m, MigrationPhase::StopAndCopy);
                self.migs[m.index()].paused_at = Some(self.now());
                self.start_flow(m, Stage::StopCopy, pages, PageKind::FullCopy, state);
            }
            Mechanism::PostCopy => {
                self.transition(m, MigrationPhase::StopAndCopy);
                let mig = &mut self.migs[m.index()];
                mig.paused_at = Some(self.q.now());
                mig.postcopy_pending = pages;
                self.start_flow(m, Stage::PostCopySwitch, 0.0, PageKind::Resend, state);
            }
        }
    }

    /// Pages `vm` dirties in `run_secs` of guest time: the expectation
    /// itself (fractional: rounding it would make every stop-and-copy whose
    /// expectation is under half a page carry nothing) or a binomial draw.
    pub(super) fn draw_dirty(&mut self, vm: VmId, run_secs: f64, sampling: DirtySampling) -> f64 {
        let model = &self.dirty_models[vm.index()];
        match sampling {
            DirtySampling::Expected => model.expected_dirty_pages(run_secs),
            DirtySampling::Binomial => model.sample_dirty_pages(run_secs, &mut self.vm_rng[vm.index()]) as f64,
        }
    }

    pub(super) fn push_round(&mut self, m: MigrationId, round: u32, phase: RoundPhase, sent: f64, dirty: f64, throttle: u32) {
        let now = self.now();
        self.push_round_row(m, now, round, phase, sent, dirty, throttle, true);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn push_round_row(
        &mut self,
        m: MigrationId,
        now: SimTime,
        round: u32,
        phase: RoundPhase,
        sent: f64,
        dirty: f64,
        throttle: u32,
        complete: bool,
    ) {
        let mig = &self.migs[m.index()];
        let secs = (now.0 - mig.stage_start.0) as f64 / 1e9;
        self.rounds.push(RoundRow {
            migration_id: m.0,
            vm: self.sc.vms[mig.vm.index()].name.clone(),
            round,
            phase,
            start_s: mig.stage_start.as_secs_f64(),
            end_s: now.as_secs_f64(),
            // Page counts in the table are whole; bytes carry any fraction.
            pages: mig.stage_pages.round() as u64,
            bytes_on_wire: sent.round() as u64,
            rate_bytes_per_s: if secs > 0.0 { sent / secs } else { 0.0 },
            dirty_pages: dirty.round() as u64,
            throttle_pct: throttle,
            complete,
        });
    }

    pub(super) fn flow_done(&mut self, m: MigrationId, sent: f64) {
        let now = self.now();
        let stage = self.migs[m.index()].stage;
        match stage {
            Stage::IndexSync => {
                let r = self.migs[m.index()].rounds;
                self.push_round(m, r, RoundPhase::IndexSync, sent, 0.0, 0);
                self.begin_transfer(m);
            }
            Stage::PreCopyRound => match self.sc.calibration.as_ref().map_or(0, |c| c.round_fixed_ns(self.migs[m.index()].route.one_way_latency)) {
                0 => self.precopy_round_done(m, sent),
                fixed => {
                    self.migs[m.index()].stage = Stage::Arriving;
                    self.q.schedule_in(Nanos(fixed), Event::Arrived(m, Arrival::RoundSettled));
                }
            },
            Stage::StopCopy => {
                let r = self.migs[m.index()].rounds;
                self.push_round(m, r, RoundPhase::StopCopy, sent, 0.0, self.migs[m.index()].throttle.throttle_pct());
                let mig = &mut self.migs[m.index()];
                mig.stage = Stage::Arriving;
                // Calibrated switchover costs (pause, state, resume, and the
                // integrity hashing that outlasts the stop-and-copy).
                let memory = self.sc.vms[mig.vm.index()].memory.0;
                let sending = now.0.saturating_sub(mig.stage_start.0);
                let extra = self.sc.calibration.as_ref().map_or(0, |c| c.downtime_extra_ns(memory, sending));
                self.q.schedule_in(Nanos(mig.route.one_way_latency.0 + extra), Event::Arrived(m, Arrival::Finish));
            }
            Stage::PostCopySwitch => {
                let r = self.migs[m.index()].rounds;
                self.push_round(m, r, RoundPhase::PostCopySwitch, sent, 0.0, 0);
                let mig = &mut self.migs[m.index()];
                mig.stage = Stage::Arriving;
                self.q.schedule_in(mig.route.one_way_latency, Event::Arrived(m, Arrival::Resume));
            }
            Stage::PostCopyPush => {
                let mig = &self.migs[m.index()];
                let (vm, pending, rtt) = (mig.vm, mig.postcopy_pending, mig.route.rtt());
                let push_secs = (now.0 - mig.stage_start.0) as f64 / 1e9;
                let which = match mig.postcopy_window_secs {
                    None => Pending::All,
                    Some(run_secs) => Pending::DirtiedIn { run_secs, pages: pending },
                };
                let rate = if push_secs > 0.0 { sent / push_secs } else { f64::INFINITY };
                // A faulted page travels reduced like the rest of the push.
                let page_wire = if pending > 0.0 { sent / pending } else { RAW_PAGE_WIRE_BYTES as f64 };
                let per_fault = rtt.as_secs_f64() + page_wire / rate;
                let vcpus = self.sc.vms[vm.index()].vcpus;
                let model = &self.dirty_models[vm.index()];
                let speed = model.postcopy_guest_speed(which, push_secs, per_fault, vcpus);
                // The expectation stays fractional for the wait; the count is whole.
                let faults = match mig.settings.dirty_sampling {
                    DirtySampling::Expected => model.expected_postcopy_faults(which, push_secs, speed),
                    DirtySampling::Binomial => {
                        model.sample_postcopy_faults(which, push_secs, speed, &mut self.vm_rng[vm.index()]) as f64
                    }
                };
                let r = mig.rounds + 1;
                let mig = &mut self.migs[m.index()];
                mig.postcopy_faults = faults.round() as u64;
                mig.postcopy_fault_wait = Nanos::from_secs_ceil(faults * per_fault);
                mig.postcopy_guest_speed = speed;
                self.push_round(m, r, RoundPhase::PostCopyPush, sent, 0.0, 0);
                let mig = &mut self.migs[m.index()];
                mig.stage = Stage::Arriving;
                self.q.schedule_in(mig.route.one_way_latency, Event::Arrived(m, Arrival::Finish));
            }
            Stage::Connecting | Stage::Arriving | Stage::Done => unreachable!("no flow in stage {stage:?}"),
        }
    }

    pub(super) fn precopy_round_done(&mut self, m: MigrationId, sent: f64) {
        let now = self.now();
        let mig = &self.migs[m.index()];
        let vm = mig.vm;
        let secs = (now.0 - mig.stage_start.0) as f64 / 1e9;
        let auto = mig.settings.auto_converge;
        let run_fraction = if auto { mig.throttle.run_fraction() } else { 1.0 };
        let throttle_during = mig.throttle.throttle_pct();
        let sampling = mig.settings.dirty_sampling;
        let round = mig.rounds;
        let dirty = match self.traced[m.index()].as_mut() {
            Some(tr) => {
                // Exact: the pages dirtied in this round's window of guest
                // time, reduced now (the next stage sends exactly them).
                let weight = tr.run.advance(&tr.vm, secs * run_fraction * 1e9);
                let tally = self.traced_tally(m, false);
                self.traced[m.index()].as_mut().expect("traced").prepared = Some(tally);
                weight.round()
            }
            None => self.draw_dirty(vm, secs * run_fraction, sampling),
        };
        self.push_round(m, round, RoundPhase::PreCopy, sent, dirty, throttle_during);
        let mig = &mut self.migs[m.index()];
        mig.rounds += 1;
        if auto {
            let pct = mig.throttle.on_round((dirty * PAGE_SIZE_BYTES as f64).round() as u64, sent.round() as u64);
            mig.throttle_pct_max = mig.throttle_pct_max.max(pct);
        }
        let rate = if secs > 0.0 { sent / secs } else { f64::INFINITY };
        let state = self.sc.vms[vm.index()].device_state.0;
        let window = Some(secs * run_fraction);
        if mig.settings.mechanism == Mechanism::Hybrid {
            self.switch_to_postcopy(m, dirty, state, window);
            return;
        }
        // What the dirty pages will cost on the wire after reduction.
        // The shared estimator, on what this round sent (as the validator does).
        let t = &mig.last_stage_tally;
        let wire = RoundWire { pages: t.pages, wire_bytes: t.wire_bytes, zero_pages: t.pages_zero, zero_wire_bytes: t.wire_zero };
        let remaining = remaining_bytes_estimate(dirty, &wire, RAW_PAGE_WIRE_BYTES as f64);
        let ctx = PrecopyContext {
            rounds_completed: mig.rounds,
            remaining_bytes: remaining,
            measured_rate: BytesPerSecond(rate),
        };
        match precopy_decision(&ctx, &mig.settings.precopy) {
            PrecopyDecision::Continue => self.start_flow(m, Stage::PreCopyRound, dirty, PageKind::Resend, 0),
            PrecopyDecision::StopAndCopy => {
                mig.converged = Some(true);
                self.stop_and_copy(m, dirty, state);
            }
            PrecopyDecision::NotConverged(action) => {
                mig.converged = Some(false);
                match action {
                    NonConvergence::ForceStop => self.stop_and_copy(m, dirty, state),
                    NonConvergence::PostCopy => self.switch_to_postcopy(m, dirty, state, window),
                    NonConvergence::Abort => {
                        self.transition(m, MigrationPhase::Failed);
                        self.end_migration(m, Outcome::NotConverged);
                    }
                }
            }
        }
    }

    pub(super) fn stop_and_copy(&mut self, m: MigrationId, pages: f64, state: u64) {
        self.transition(m, MigrationPhase::StopAndCopy);
        self.migs[m.index()].paused_at = Some(self.now());
        self.start_flow(m, Stage::StopCopy, pages, PageKind::Resend, state);
    }

    pub(super) fn switch_to_postcopy(&mut self, m: MigrationId, pending: f64, state: u64, window_secs: Option<f64>) {
        self.transition(m, MigrationPhase::StopAndCopy);
        let now = self.now();
        let mig = &mut self.migs[m.index()];
        mig.paused_at = Some(now);
        mig.postcopy_pending = pending;
        mig.postcopy_window_secs = window_secs;
        self.start_flow(m, Stage::PostCopySwitch, 0.0, PageKind::Resend, state);
    }

    pub(super) fn arrived(&mut self, m: MigrationId, kind: Arrival) {
        if self.migs[m.index()].outcome.is_some() {
            return;
        }
        let now = self.now();
        match kind {
            Arrival::RoundSettled => {
                let sent = self.migs[m.index()].stage_bytes;
                self.precopy_round_done(m, sent);
            }
            Arrival::Resume => {
                self.transition(m, MigrationPhase::PostCopy);
                let mig = &mut self.migs[m.index()];
                mig.resumed_at = Some(now);
                // The VM now runs at the destination.
                self.state.switch_host(mig.vm, m);
                let pending = mig.postcopy_pending;
                let kind = if mig.postcopy_window_secs.is_some() { PageKind::Resend } else { PageKind::FullCopy };
                self.start_flow(m, Stage::PostCopyPush, pending, kind, 0);
            }
            Arrival::Finish => {
                let mig = &mut self.migs[m.index()];
                if mig.phase == MigrationPhase::StopAndCopy {
                    mig.resumed_at = Some(now);
                }
                self.transition(m, MigrationPhase::Completed);
                self.end_migration(m, Outcome::Completed);
            }
        }
    }

    /// Records the end, updates placement and capacity, and tells the operation.
    pub(super) fn end_migration(&mut self, m: MigrationId, outcome: Outcome) {
        let fate = match outcome {
            Outcome::Completed => Fate::AtDestination,
            Outcome::Lost => Fate::Lost,
            _ => Fate::AtSource,
        };
        self.end_migration_as(m, outcome, fate);
    }

    /// Records the end with where the VM ends up, updates placement,
    /// capacity and content, and tells the owning policy.
    pub(super) fn end_migration_as(&mut self, m: MigrationId, outcome: Outcome, fate: Fate) {
        let now = self.now();
        self.migrations_ended += 1;
        let mig = &mut self.migs[m.index()];
        mig.outcome = Some(outcome);
        mig.end = Some(now);
        mig.stage = Stage::Done;
        mig.reduction = None;
        let (vm, src, dst, op) = (mig.vm, mig.src, mig.dst, mig.operation);
        let (src_site, dst_site) = (self.sc.fabric.hosts[src.index()].site, self.sc.fabric.hosts[dst.index()].site);
        match fate {
            Fate::AtDestination => {
                self.move_image(vm, Some(src_site), Some(dst_site));
                self.state.end_migration(vm, m, Some(dst));
            }
            Fate::AtSource => self.state.end_migration(vm, m, Some(src)),
            Fate::Lost => {
                self.move_image(vm, Some(src_site), None);
                self.state.end_migration(vm, m, None);
                self.vm_lost(vm);
            }
            Fate::Down => {
                self.move_image(vm, Some(src_site), None);
                self.state.end_migration_down(vm, m, now);
            }
        }
        self.notify(op, FabricEvent::MigrationEnded { migration: m, vm, outcome });
    }

    pub(super) fn link_down(&mut self, l: LinkId) {
        self.state.set_link_up(l, false);
        self.set_link_capacity(l, 0.0);
        let now = self.now();
        let hit: Vec<MigrationId> = self
            .migs
            .iter()
            .filter(|m| m.outcome.is_none() && m.route.hops.iter().any(|h| h.link == l))
            .map(|m| m.id)
            .collect();
        for m in hit {
            self.cut_flow(m, now);
            let mig = &mut self.migs[m.index()];
            let outcome = if mig.phase == MigrationPhase::PostCopy {
                Outcome::Lost
            } else {
                if mig.paused_at.is_some() {
                    mig.resumed_at = Some(now); // resumes at the source
                }
                Outcome::AbortedLinkFailure
            };
            self.transition(m, MigrationPhase::Failed);
            self.end_migration(m, outcome);
        }
        self.broadcast(FabricEvent::LinkDown { link: l });
    }
}
