// Allowed: cli may include model.
#include "model/a.hpp"
