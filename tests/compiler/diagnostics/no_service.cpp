// expected-error@1 {{service has no GEARS_SERVICE(name, version) declaration}}
#include <gears/service.h>

[[gears::vmm]] int f() { return 0; }
