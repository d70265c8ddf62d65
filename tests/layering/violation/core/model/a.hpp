// model must not include cli: the layering check has to say so.
#include "cli/x.hpp"
