// SimGrid 3.32's live-migration model as a peer of memfabric's simulator:
// predicts the total time of one pre-copy migration of a VM between two
// hosts joined by one link. Built by build.sh from Debian's libsimgrid-dev.
//
//   memfabric-simgrid-driver RAM_BYTES LINK_BYTES_PER_S LATENCY_S DIRTY_BYTES_PER_S WORKING_SET_BYTES
//
// prints `total_time_s=<seconds>` on stdout, or `total_time_s=inf` when the
// migration has not ended after GUARD_FACTOR × RAM / rate simulated seconds
// (SimGrid's pre-copy iterates until it meets its 30 ms target, which with
// its per-transfer latency costs it may never do).
//
// How our cases map onto SimGrid's model: it has no zero pages, compression
// or deduplication (compare it on `none` runs only), a fixed 30 ms downtime
// target, and dirties memory in proportion to the computation the VM does:
// dirty bytes per second = migration speed × dirty-page intensity while the
// VM computes at full speed, capped at the working set per stage. The VM
// computes without pause (10 ms computations, one after another); the migration speed is the link rate and
// the intensity is (page writes/s × 4096) / link rate.

#include <cstdio>
#include <cstdlib>
#include <string>

#include <simgrid/plugins/live_migration.h>
#include <simgrid/s4u.hpp>
#include <simgrid/s4u/VirtualMachine.hpp>

namespace sg4 = simgrid::s4u;

/// Simulated time allowed, in multiples of one copy of RAM at the link rate.
constexpr double GUARD_FACTOR = 20.0;

int main(int argc, char** argv)
{
  sg4::Engine e(&argc, argv);
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s RAM_BYTES LINK_BYTES_PER_S LATENCY_S DIRTY_BYTES_PER_S WORKING_SET_BYTES\n", argv[0]);
    return 2;
  }
  const double ram = std::atof(argv[1]);
  const double rate = std::atof(argv[2]);
  const double latency = std::atof(argv[3]);
  const double dirty = std::atof(argv[4]);
  const double working_set = std::atof(argv[5]);
  if (!(ram > 0 && rate > 0 && latency >= 0 && dirty >= 0 && working_set >= 0)) {
    std::fprintf(stderr, "bad arguments\n");
    return 2;
  }
  sg_vm_live_migration_plugin_init();

  auto* zone = sg4::create_full_zone("zone");
  auto* src  = zone->create_host("src", "1Gf");
  auto* dst  = zone->create_host("dst", "1Gf");
  auto* link = zone->create_link("link", rate)->set_latency(latency)->seal();
  zone->add_route(src->get_netpoint(), dst->get_netpoint(), nullptr, nullptr, {sg4::LinkInRoute(link)}, true);
  zone->seal();

  sg4::Actor::create("migrate", src, [=]() {
    auto* vm = src->create_vm("vm", 1, static_cast<size_t>(ram));
    vm->start();
    sg_vm_set_migration_speed(vm, rate);
    sg_vm_set_dirty_page_intensity(vm, dirty / rate);
    sg_vm_set_working_set_memory(vm, static_cast<sg_size_t>(working_set));
    // Short computations, one after another: SimGrid counts the dirtying of
    // computations that start while the migration tracks dirty pages.
    sg4::Actor::create("guest", vm, []() {
      for (;;)
        sg4::this_actor::execute(1e7);
    });
    sg4::this_actor::sleep_for(1.0); // the guest runs before the migration, as the validator's warm-up
    const double t0 = sg4::Engine::get_clock();
    sg_vm_migrate(vm, dst);
    const double t1 = sg4::Engine::get_clock();
    std::printf("total_time_s=%.9f\n", t1 - t0);
    std::fflush(stdout);
    std::_Exit(0);
  });
  sg4::Actor::create("guard", dst, [=]() {
    sg4::this_actor::sleep_for(1.0 + GUARD_FACTOR * ram / rate);
    std::printf("total_time_s=inf\n");
    std::fflush(stdout);
    std::_Exit(0);
  });
  e.run();
  return 1; // the migration actor exits the process
}
